// The integrity stamp of the files KVHDF5 writes (pure Swift, no HDF5 calls).
//
// Every file KVHDF5 writes starts with a 512-byte HDF5 user block (HDF5 and h5py skip it and find
// the superblock at offset 512) holding a text header:
//
//   KVLab HDF5 integrity v1
//   xxh64 0123456789abcdef
//   bytes 123456
//
// `xxh64` is the XXH64 hash (seed 0) of the whole file with the 16 digest characters read as
// ASCII '0', and `bytes` the file's length. `H5File.open` checks both before HDF5 reads one byte
// of the file: HDF5 1.10 (Debian's 1.10.8) trusts parts of a file it has no checksums for (the
// global heap of variable-length strings, dense link and attribute storage) and can crash on a
// damaged file (ASan: H5HG_read copying a corrupt length, H5G__link_release_table freeing an
// invalid pointer); a file whose stamp does not match never reaches it. A file without a stamp
// (another program's, an older KVLab's, or one whose header was overwritten: they look the same)
// is read as any HDF5 reader would, except where KVLab must have written it itself: results files
// that are resumed, merged or compared (`H5File.open(requireStamp:)`), which are read only with
// KVLAB_IGNORE_CHECKSUM=1.
import Foundation

/// The user block header and its checks.
enum H5Integrity {
    /// The user block size (HDF5 requires a power of 2 >= 512).
    static let userBlockSize = 512
    static let magic = "KVLab HDF5 integrity v1\n"
    static let digestPrefix = "xxh64 "
    /// Set to open files whose stamp does not match, or that have none (documented escape hatch
    /// for files a user trusts; HDF5 1.10 may crash on a really damaged one).
    static let ignoreEnvironment = "KVLAB_IGNORE_CHECKSUM"

    /// Byte range of the 16 hex digest characters in the header.
    static var digestRange: Range<Int> {
        let start = magic.utf8.count + digestPrefix.utf8.count
        return start ..< start + 16
    }

    /// The file to write for `image` (what H5Fget_file_image returns: the file from its superblock
    /// on, without the user block): the stamped header, then the image.
    static func stamped(_ image: [UInt8]) -> [UInt8] {
        let total = userBlockSize + image.count
        let text = magic + digestPrefix + String(repeating: "0", count: 16) + "\nbytes \(total)\n"
        var out = Array(text.utf8)
        precondition(out.count < userBlockSize)
        out += [UInt8](repeating: 0, count: userBlockSize - out.count)
        out.reserveCapacity(total)
        out += image
        let digest = out.withUnsafeBytes { XXH64.hash($0) }
        let hex = Array(String(format: "%016llx", digest).utf8)
        for (i, b) in zip(digestRange, hex) { out[i] = b }
        return out
    }

    /// What a file's first bytes say about it.
    enum Verdict: Equatable {
        /// No KVLab header: a file from another program (or an older KVLab).
        case unstamped
        case intact
        /// The header is there but the file does not match it; the reason names what differs.
        case damaged(String)
    }

    /// Checks `image` (a whole file) against its header.
    static func verify(_ image: UnsafeRawBufferPointer) -> Verdict {
        // A header with a damaged first line is still a header: a few differing bytes do not
        // make a stamped file look like another program's.
        let m = Array(magic.utf8)
        let matching = zip(image.prefix(m.count), m).filter { $0 == $1 }.count
        guard matching >= m.count - 4 else { return .unstamped }
        guard matching == m.count else { return .damaged("its integrity header is damaged") }
        guard image.count >= userBlockSize else {
            return .damaged("the file is \(image.count) bytes, shorter than its \(userBlockSize)-byte header (truncated)")
        }
        let header = image.prefix(userBlockSize)
        let end = header.firstIndex(of: 0) ?? userBlockSize
        let text = String(decoding: header[..<end], as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard lines.count >= 3, lines[1].hasPrefix(digestPrefix), lines[2].hasPrefix("bytes "),
              let expected = UInt64(lines[1].dropFirst(digestPrefix.count), radix: 16),
              lines[1].count == digestPrefix.count + 16,
              let length = Int(lines[2].dropFirst("bytes ".count)) else {
            return .damaged("its integrity header is unreadable")
        }
        guard length == image.count else {
            return .damaged("it is \(image.count) bytes but was written with \(length) (\(image.count < length ? "truncated" : "bytes appended"))")
        }
        var zeroed = [UInt8](header)
        for i in digestRange { zeroed[i] = UInt8(ascii: "0") }
        var h = XXH64()
        zeroed.withUnsafeBytes { h.update($0) }
        h.update(UnsafeRawBufferPointer(rebasing: image[userBlockSize...]))
        let actual = h.finalize()
        guard actual == expected else {
            return .damaged(String(format: "its checksum is %016llx, the header says %016llx (bytes changed after KVLab wrote it)", actual, expected))
        }
        return .intact
    }

    static var ignoringMismatches: Bool {
        guard let v = ProcessInfo.processInfo.environment[ignoreEnvironment] else { return false }
        return !v.isEmpty && v != "0"
    }
}

/// XXH64 (Yann Collet's xxHash, 64-bit, seed 0), streaming. Not cryptographic: it detects damage
/// (flipped, lost or added bytes), not tampering.
struct XXH64 {
    private static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    private static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    private static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    private static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    private static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1: UInt64 = p1 &+ p2, v2: UInt64 = p2, v3: UInt64 = 0, v4: UInt64 = 0 &- p1
    private var total = 0
    private var buffer = [UInt8](repeating: 0, count: 32)
    private var buffered = 0

    @inline(__always) private static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    @inline(__always) private static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }
    @inline(__always) private static func mergeRound(_ acc: UInt64, _ val: UInt64) -> UInt64 {
        (acc ^ round(0, val)) &* p1 &+ p4
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var h = XXH64()
        h.update(bytes)
        return h.finalize()
    }

    @inline(__always) private mutating func stripe(_ p: UnsafeRawPointer) {
        v1 = Self.round(v1, UInt64(littleEndian: p.loadUnaligned(as: UInt64.self)))
        v2 = Self.round(v2, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
        v3 = Self.round(v3, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 16, as: UInt64.self)))
        v4 = Self.round(v4, UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt64.self)))
    }

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress, bytes.count > 0 else { return }
        var n = bytes.count
        total += n
        if buffered > 0 {
            let take = min(32 - buffered, n)
            buffer.withUnsafeMutableBytes { ($0.baseAddress! + buffered).copyMemory(from: p, byteCount: take) }
            buffered += take; p += take; n -= take
            if buffered < 32 { return }
            buffer.withUnsafeBytes { stripe($0.baseAddress!) }
            buffered = 0
        }
        while n >= 32 { stripe(p); p += 32; n -= 32 }
        if n > 0 {
            buffer.withUnsafeMutableBytes { $0.baseAddress!.copyMemory(from: p, byteCount: n) }
            buffered = n
        }
    }

    func finalize() -> UInt64 {
        var h: UInt64
        if total >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.mergeRound(h, v1); h = Self.mergeRound(h, v2); h = Self.mergeRound(h, v3); h = Self.mergeRound(h, v4)
        } else {
            h = Self.p5
        }
        h &+= UInt64(total)
        buffer.withUnsafeBytes { raw in
            var i = 0
            while i + 8 <= buffered {
                h ^= Self.round(0, UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt64.self)))
                h = Self.rotl(h, 27) &* Self.p1 &+ Self.p4
                i += 8
            }
            if i + 4 <= buffered {
                h ^= UInt64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt32.self))) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                i += 4
            }
            while i < buffered {
                h ^= UInt64(raw[i]) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                i += 1
            }
        }
        h ^= h >> 33; h &*= Self.p2
        h ^= h >> 29; h &*= Self.p3
        h ^= h >> 32
        return h
    }
}
