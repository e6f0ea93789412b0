// In-memory file images: HDF5 never writes to disk in KVHDF5.
//
// Root cause of the crashes on a full disk (ASan, Debian's libhdf5 1.10.8): when H5Fclose fails
// to flush (ENOSPC, EFBIG), HDF5 1.10 leaves the file's identifier half torn down in its ID table;
// the error is reported, and at exit H5_term_library closes it again and dereferences freed state
// (SEGV in H5F__close_cb / H5D_close). So every file is built in memory (the core driver without
// a backing store, where closing cannot fail on I/O), its image is taken with H5Fget_file_image,
// stamped (H5Integrity) and written by plain POSIX calls whose every error is ours to report.
// Reads go through memory too: the bytes that were checked are the bytes HDF5 parses.
import Foundation
internal import CHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

enum H5Image {
    /// A file-access list for an in-memory file (core driver, no backing store), optionally
    /// starting from `image`; files use the HDF5 1.8 object format. The caller closes it.
    static func accessList(image: UnsafeRawBufferPointer?, _ file: String) throws -> hid_t {
        let fapl = try check(H5Pcreate(kv_H5P_FILE_ACCESS()), "H5Pcreate", file, "/")
        do {
            try check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), "H5Pset_libver_bounds", file, "/")
            try check(H5Pset_fapl_core(fapl, 1 << 20, false), "H5Pset_fapl_core", file, "/")
            if let image, let base = image.baseAddress, image.count > 0 {
                try check(H5Pset_file_image(fapl, UnsafeMutableRawPointer(mutating: base), image.count),
                          "H5Pset_file_image", file, "/")
            }
        } catch { H5Pclose(fapl); throw error }
        return fapl
    }

    /// A file-creation list with the integrity user block and small chunk B-tree nodes. The
    /// caller closes it.
    static func creationList(_ file: String) throws -> hid_t {
        let fcpl = try check(H5Pcreate(H5P_CLS_FILE_CREATE_ID_g), "H5Pcreate", file, "/")
        do {
            try check(H5Pset_userblock(fcpl, hsize_t(H5Integrity.userBlockSize)), "H5Pset_userblock", file, "/")
            // Every dataset is chunked (Fletcher32 needs chunks) and most hold one chunk: B-tree
            // nodes of 2 entries instead of 64 keep the chunk index small (a results file of
            // experiments/smoke.yaml: 175 KB, 643 KB with HDF5's default of 32).
            try check(H5Pset_istore_k(fcpl, 1), "H5Pset_istore_k", file, "/")
        } catch { H5Pclose(fcpl); throw error }
        return fcpl
    }

    /// A name HDF5 cannot confuse with another open file (it matches in-memory files by name).
    static func memoryName(_ path: String) -> String { "\(path)#kvhdf5-\(UUID().uuidString)" }

    /// The current image of an open file (flushed first).
    static func image(of fileID: hid_t, _ file: String) throws -> [UInt8] {
        try check(H5Fflush(fileID, H5F_SCOPE_GLOBAL), "H5Fflush", file, "/")
        let size = try check(H5Fget_file_image(fileID, nil, 0), "H5Fget_file_image", file, "/")
        var bytes = [UInt8](repeating: 0, count: Int(size))
        let got = try bytes.withUnsafeMutableBytes {
            try check(H5Fget_file_image(fileID, $0.baseAddress, Int(size)), "H5Fget_file_image", file, "/")
        }
        guard got == size else {
            throw H5Error.libraryCall(function: "H5Fget_file_image", file: file, object: "/",
                                      detail: "image is \(got) bytes, expected \(size)")
        }
        try fixSuperblockChecksum(&bytes, file)
        return bytes
    }

    /// HDF5 1.10.8's H5Fget_file_image returns a file with a user block without it, and with the
    /// superblock (version 2, at the image's start) carrying a stale checksum (every other byte
    /// equals what H5Fclose writes to disk, checked with the C API): recompute it.
    static func fixSuperblockChecksum(_ image: inout [UInt8], _ file: String) throws {
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        guard image.count >= 12, image.prefix(8).elementsEqual(signature) else {
            throw H5Error.libraryCall(function: "H5Fget_file_image", file: file, object: "/", detail: "the image does not start with a superblock")
        }
        let version = image[8], addressSize = Int(image[9])
        guard version >= 2 else { return }   // versions 0 and 1 have no checksum
        let length = 12 + 4 * addressSize
        guard image.count >= length + 4 else {
            throw H5Error.libraryCall(function: "H5Fget_file_image", file: file, object: "/", detail: "the image is shorter than its superblock")
        }
        let sum = image.withUnsafeBytes { H5_checksum_metadata($0.baseAddress!, length, 0) }
        withUnsafeBytes(of: sum.littleEndian) { for i in 0 ..< 4 { image[length + i] = $0[i] } }
    }

    /// The bytes of the file at `path`, or `fileNotFound` / `fileSystem`.
    static func readFile(_ path: String) throws -> [UInt8] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw H5Error.fileNotFound(file: path)
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw H5Error.fileSystem(file: path, operation: "open", reason: errnoDescription(errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw H5Error.fileSystem(file: path, operation: "stat", reason: errnoDescription(errno)) }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var done = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while done < buffer.count {
                let n = read(fd, buffer.baseAddress! + done, buffer.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw H5Error.fileSystem(file: path, operation: "read", reason: errnoDescription(errno))
                }
                if n == 0 { break }   // shrank while reading: what was read is checked like any file
                done += n
            }
        }
        if done < bytes.count { bytes.removeLast(bytes.count - done) }
        return bytes
    }

    /// Writes `image` to `path` crash-safely: a new `.<name>.tmp-<pid>-<random>` next to it,
    /// written in full, fsync'ed and renamed over `path`, then the directory fsync'ed. On any
    /// error (ENOSPC, EFBIG, EIO...) the temporary file is removed and `path` is untouched.
    static func writeAtomically(_ image: [UInt8], to path: String, temporary: String? = nil) throws {
        let temp = temporary ?? atomicTemporaryPath(for: path)
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw H5Error.fileSystem(file: path, operation: "create '\(temp)'", reason: errnoDescription(errno))
        }
        do {
            var done = 0
            try image.withUnsafeBytes { buffer in
                while done < buffer.count {
                    let n = write(fd, buffer.baseAddress! + done, buffer.count - done)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw H5Error.fileSystem(file: path, operation: "write '\(temp)'", reason: errnoDescription(errno))
                    }
                    done += n
                }
            }
            guard fsync(fd) == 0 else {
                throw H5Error.fileSystem(file: path, operation: "fsync '\(temp)'", reason: errnoDescription(errno))
            }
            guard close(fd) == 0 else {
                throw H5Error.fileSystem(file: path, operation: "close '\(temp)'", reason: errnoDescription(errno))
            }
        } catch {
            _ = close(fd)
            removeFileQuietly(temp)
            throw error
        }
        do { try renamePath(temp, to: path) } catch { removeFileQuietly(temp); throw error }
        try? fsyncPath(parentDirectory(of: path), target: path, directory: true)
    }
}

func errnoDescription(_ code: Int32) -> String { String(cString: strerror(code)) + " (errno \(code))" }
