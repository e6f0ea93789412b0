import Foundation

/// A GGUF file (llama.cpp's model format, ggml docs/gguf.md) mapped read-only into memory.
///
/// Layout (little-endian): magic "GGUF", u32 version (2 or 3), u64 tensor count, u64 metadata
/// count, the metadata key/values, the tensor infos (name, u32 n_dims, u64 dims[n_dims] with the
/// fastest-varying dimension first, u32 ggml type, u64 offset into the data section), padding to
/// `general.alignment` (default 32), then the data section.
///
/// Every count, length and offset is checked against the bytes that remain before anything is
/// allocated, so a corrupt or hostile file gets a `GGUFError` naming the file and the problem,
/// never a crash or a huge allocation. Tensor data is not copied: `data(_:)` points into the map.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: Int
    /// Metadata in file order (keys are unique).
    public let metadata: [(key: String, value: GGUFValue)]
    /// Tensor infos in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Byte offset of the data section in the file.
    public let dataOffset: Int
    public let fileSize: Int

    private let base: UnsafeRawPointer
    private let byName: [String: Int]
    private let byKey: [String: Int]

    /// Limits that bound what a corrupt header can make the parser allocate or loop over.
    public static let maxStringBytes = 64 << 20
    public static let maxArrayNesting = 4
    public static let maxDims = 4

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw FileManager.default.fileExists(atPath: path)
                ? GGUFError(file: path, String(cString: strerror(errno)))
                : GGUFError(file: path, "file not found")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GGUFError(file: path, "cannot stat the file") }
        let size = Int(st.st_size)
        guard size >= 24 else { throw GGUFError(file: path, "file is \(size) bytes, shorter than a GGUF header (24 bytes)") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw GGUFError(file: path, "mmap failed: \(String(cString: strerror(errno)))")
        }
        let raw = UnsafeRawPointer(map)
        do {
            var r = GGUFReader(base: raw, size: size, file: path)
            let magic = try r.bytes(4)
            guard Array(magic) == Array("GGUF".utf8) else {
                throw GGUFError(file: path, "bad magic \(magic.map { String(format: "%02x", $0) }.joined(separator: " ")) (expected 'GGUF'; not a GGUF file)")
            }
            let v = try r.u32()
            if v > 0xFFFF && v.byteSwapped <= 3 { throw GGUFError(file: path, "big-endian GGUF files are not supported") }
            guard v == 2 || v == 3 else {
                throw GGUFError(file: path, v == 1 ? "GGUF version 1 is not supported (expected 2 or 3; re-convert the model)"
                                                    : "unknown GGUF version \(v) (expected 2 or 3)")
            }
            version = Int(v)
            let nTensors = try r.u64(), nKV = try r.u64()
            // The smallest metadata entry is 8 (key length) + 1 (key) + 4 (type) + 1 (u8) = 14 bytes; the
            // smallest tensor info 8 + 1 + 4 + 8 + 4 + 8 = 33 bytes. Counts beyond that cannot be real.
            guard nKV <= UInt64(r.remaining / 14) else {
                throw GGUFError(file: path, "metadata count \(nKV) cannot fit in the \(r.remaining) bytes that follow (corrupt header)")
            }
            var md: [(key: String, value: GGUFValue)] = []
            md.reserveCapacity(Int(nKV))
            var keys: [String: Int] = [:]
            for i in 0..<Int(nKV) {
                let key = try r.string(what: "metadata key #\(i)")
                let type = try r.u32()
                let value = try r.value(type: type, what: "metadata '\(key)'", depth: 0)
                guard keys[key] == nil else { throw GGUFError(file: path, "metadata key '\(key)' appears twice") }
                keys[key] = md.count
                md.append((key, value))
            }
            guard nTensors <= UInt64(r.remaining / 33) else {
                throw GGUFError(file: path, "tensor count \(nTensors) cannot fit in the \(r.remaining) bytes that follow (corrupt header)")
            }
            var align = 32
            if let a = keys["general.alignment"] {
                guard let n = md[a].value.int, n > 0, n <= 1 << 20, n & (n - 1) == 0 else {
                    throw GGUFError(file: path, "metadata 'general.alignment' is \(md[a].value.brief) (expected a power of two up to 2^20)")
                }
                align = n
            }
            var infos: [GGUFTensorInfo] = []
            infos.reserveCapacity(Int(nTensors))
            var names: [String: Int] = [:]
            for i in 0..<Int(nTensors) {
                let name = try r.string(what: "tensor #\(i)'s name")
                let nd = try r.u32()
                guard nd >= 1 && nd <= UInt32(Self.maxDims) else {
                    throw GGUFError(file: path, "tensor '\(name)': \(nd) dimensions (expected 1...\(Self.maxDims))")
                }
                var dims: [Int] = []
                var count = 1
                for _ in 0..<Int(nd) {
                    let n = try r.u64()
                    guard n >= 1 && n < 1 << 40 else { throw GGUFError(file: path, "tensor '\(name)': dimension \(n) is out of range") }
                    let (p, o) = count.multipliedReportingOverflow(by: Int(n))
                    guard !o && p < 1 << 40 else { throw GGUFError(file: path, "tensor '\(name)': \(dims + [Int(n)]) elements overflow") }
                    count = p
                    dims.append(Int(n))
                }
                let rawType = try r.u32()
                guard let type = GGMLType(rawValue: rawType) else {
                    throw GGUFError(file: path, "tensor '\(name)': unknown ggml type \(rawType)")
                }
                let offset = try r.u64()
                guard dims[0] % type.blockSize == 0 else {
                    throw GGUFError(file: path, "tensor '\(name)': first dimension \(dims[0]) is not a multiple of \(type.name)'s block of \(type.blockSize)")
                }
                guard offset < 1 << 50, Int(offset) % align == 0 else {
                    throw GGUFError(file: path, "tensor '\(name)': data offset \(offset) is not aligned to \(align) bytes")
                }
                guard names[name] == nil else { throw GGUFError(file: path, "tensor '\(name)' appears twice") }
                names[name] = infos.count
                infos.append(GGUFTensorInfo(name: name, dims: dims, type: type, offset: Int(offset),
                                            byteCount: count / type.blockSize * type.blockBytes))
            }
            let start = (r.position + align - 1) / align * align
            guard start <= size else {
                throw GGUFError(file: path, "data section would start at byte \(start), past the end of the file (\(size) bytes; truncated?)")
            }
            for t in infos where t.offset + t.byteCount > size - start {
                throw GGUFError(file: path, "tensor '\(t.name)': bytes \(t.offset)..<\(t.offset + t.byteCount) of the data section lie past the end of the file (data section is \(size - start) bytes; truncated?)")
            }
            metadata = md
            tensors = infos
            alignment = align
            dataOffset = start
            fileSize = size
            byName = names
            byKey = keys
            base = raw
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), fileSize) }

    /// A metadata value by key.
    public subscript(key: String) -> GGUFValue? { byKey[key].map { metadata[$0].value } }

    /// A tensor's info by name.
    public func tensor(_ name: String) -> GGUFTensorInfo? { byName[name].map { tensors[$0] } }

    /// The raw bytes of a tensor (blocks as stored), valid while this file is alive.
    public func data(_ info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + dataOffset + info.offset, count: info.byteCount)
    }

    /// A typed metadata lookup whose error names the file, the key and what was expected.
    public func required<T>(_ key: String, _ expected: String, _ get: (GGUFValue) -> T?) throws -> T {
        guard let v = self[key] else { throw GGUFError(file: path, "metadata '\(key)' is missing (expected \(expected))") }
        guard let t = get(v) else { throw GGUFError(file: path, "metadata '\(key)' is \(v.brief) (expected \(expected))") }
        return t
    }
}

/// One tensor's entry in a GGUF file.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// ggml order: dims[0] is the fastest-varying (a row's length); the reverse of PyTorch's shape.
    public let dims: [Int]
    public let type: GGMLType
    /// Offset from the start of the data section.
    public let offset: Int
    public let byteCount: Int
    public var elementCount: Int { dims.reduce(1, *) }
    /// The PyTorch / Hugging Face shape (row-major, slowest dimension first).
    public var shape: [Int] { dims.reversed() }
}

/// A recoverable GGUF error naming the file.
public struct GGUFError: LocalizedError, Equatable {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) { self.file = file; self.message = message }
    public var errorDescription: String? { "\(file): corrupt or unsupported GGUF file: \(message)" }
}

/// A metadata value.
public enum GGUFValue: Sendable, Equatable {
    case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String)
    indirect case array([GGUFValue])

    /// Any integer type (or a float with an integral value) as Int.
    public var int: Int? {
        switch self {
        case .uint(let u): return u <= UInt64(Int.max) ? Int(u) : nil
        case .int(let i): return Int(i)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .float(let f): return f
        case .uint(let u): return Double(u)
        case .int(let i): return Double(i)
        default: return nil
        }
    }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var array: [GGUFValue]? { if case .array(let a) = self { return a }; return nil }
    public var strings: [String]? { array?.compactMap(\.string).nilIfShort(array!.count) }
    public var ints: [Int]? { array?.compactMap(\.int).nilIfShort(array!.count) }

    /// A short rendering for error messages.
    public var brief: String {
        switch self {
        case .uint(let u): return "\(u)"
        case .int(let i): return "\(i)"
        case .float(let f): return "\(f)"
        case .bool(let b): return "\(b)"
        case .string(let s): return s.count > 40 ? "'\(s.prefix(40))...'" : "'\(s)'"
        case .array(let a): return "an array of \(a.count)"
        }
    }
}

private extension Array {
    func nilIfShort(_ n: Int) -> [Element]? { count == n ? self : nil }
}

/// A bounds-checked cursor over the mapped header.
struct GGUFReader {
    let base: UnsafeRawPointer
    let size: Int
    let file: String
    var position = 0
    var remaining: Int { size - position }

    init(base: UnsafeRawPointer, size: Int, file: String) { self.base = base; self.size = size; self.file = file }

    private mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0 && n <= remaining else {
            throw GGUFError(file: file, "\(what()) needs \(n) bytes at offset \(position) but the file ends at \(size) (truncated or corrupt)")
        }
    }
    mutating func bytes(_ n: Int) throws -> UnsafeRawBufferPointer {
        try need(n, "the header")
        defer { position += n }
        return UnsafeRawBufferPointer(start: base + position, count: n)
    }
    mutating func load<T: FixedWidthInteger>(_: T.Type) throws -> T {
        try need(MemoryLayout<T>.size, "a \(T.self)")
        defer { position += MemoryLayout<T>.size }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: position, as: T.self))
    }
    mutating func u32() throws -> UInt32 { try load(UInt32.self) }
    mutating func u64() throws -> UInt64 { try load(UInt64.self) }

    mutating func string(what: @autoclosure () -> String) throws -> String {
        let n = try u64()
        guard n <= UInt64(GGUFFile.maxStringBytes) && n <= UInt64(remaining) else {
            throw GGUFError(file: file, "\(what()): string length \(n) at offset \(position - 8) exceeds the \(remaining) bytes left (corrupt header)")
        }
        let b = try bytes(Int(n))
        guard let s = String(validating: b, as: UTF8.self) else {
            throw GGUFError(file: file, "\(what()): string at offset \(position - Int(n)) is not valid UTF-8")
        }
        return s
    }

    /// Bytes of one element of a fixed-size metadata type, nil for strings and arrays.
    static func fixedSize(_ type: UInt32) -> Int? {
        switch type {
        case 0, 1, 7: return 1
        case 2, 3: return 2
        case 4, 5, 6: return 4
        case 10, 11, 12: return 8
        default: return nil
        }
    }

    mutating func value(type: UInt32, what: @autoclosure () -> String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try load(UInt8.self)))
        case 1: return .int(Int64(try load(Int8.self)))
        case 2: return .uint(UInt64(try load(UInt16.self)))
        case 3: return .int(Int64(try load(Int16.self)))
        case 4: return .uint(UInt64(try load(UInt32.self)))
        case 5: return .int(Int64(try load(Int32.self)))
        case 6: return .float(Double(Float(bitPattern: try load(UInt32.self))))
        case 7:
            let b = try load(UInt8.self)
            guard b <= 1 else { throw GGUFError(file: file, "\(what()): bool value \(b) (expected 0 or 1)") }
            return .bool(b == 1)
        case 8: return .string(try string(what: what()))
        case 9:
            guard depth < GGUFFile.maxArrayNesting else {
                throw GGUFError(file: file, "\(what()): arrays nested deeper than \(GGUFFile.maxArrayNesting)")
            }
            let elem = try u32()
            let n = try u64()
            // Each element takes at least its fixed size, or 8 bytes (a string's length / an array's header).
            let minBytes = Self.fixedSize(elem) ?? 8
            guard n <= UInt64(remaining / minBytes) else {
                throw GGUFError(file: file, "\(what()): array of \(n) elements cannot fit in the \(remaining) bytes left (corrupt header)")
            }
            var out: [GGUFValue] = []
            out.reserveCapacity(Int(n))
            for i in 0..<Int(n) { out.append(try value(type: elem, what: "\(what())[\(i)]", depth: depth + 1)) }
            return .array(out)
        case 10: return .uint(try load(UInt64.self))
        case 11: return .int(try load(Int64.self))
        case 12: return .float(Double(bitPattern: try load(UInt64.self)))
        default:
            throw GGUFError(file: file, "\(what()): unknown metadata value type \(type) at offset \(position - 4)")
        }
    }
}
