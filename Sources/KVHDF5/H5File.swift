import Foundation
internal import CHDF5

// MARK: - File

/// An open HDF5 file. Create one with `create`, `open` or `writeAtomically`; closed by `close()`
/// or when released. Files are written in the HDF5 1.8 object format (readable by h5py and any
/// HDF5 ≥ 1.8), with a 512-byte user block holding KVLab's integrity stamp (H5Integrity.swift).
///
/// HDF5 itself never touches the disk: a file lives in memory (HDF5's core driver) while it is
/// open, is read into memory (and its stamp checked) before HDF5 parses it, and a writable file's
/// image is written back with checked POSIX calls, atomically, when it is closed (H5Image.swift).
public final class H5File {
    /// The path the file was opened or created with.
    public let path: String
    /// Whether the file was opened for writing.
    public let isWritable: Bool
    var fileID: hid_t
    /// Where `close()` writes the image of a writable file (nil: read-only, or `writeAtomically`,
    /// which writes it itself).
    private var destination: String?
    /// What precedes the superblock in the file written back: `.stamp` (a new integrity header),
    /// or the bytes of another program's user block (empty: none).
    private var userBlock: UserBlock = .stamp
    enum UserBlock { case stamp, bytes([UInt8]) }
    private final class WeakObject { weak var object: H5Object?; init(_ o: H5Object) { object = o } }
    private var openObjects: [ObjectIdentifier: WeakObject] = [:]

    private init(path: String, fileID: hid_t, writable: Bool, destination: String?) {
        self.path = path
        self.fileID = fileID
        self.isWritable = writable
        self.destination = destination
    }

    deinit { try? close() }

    /// Whether the file is still open.
    public var isOpen: Bool { fileID >= 0 }

    /// The root group "/".
    public var root: H5Group { H5Group(file: self, id: fileID, path: "/", ownsID: false) }

    /// Creates a new, empty file in memory; `destination` (if any) receives it on `close()`.
    private static func createInMemory(_ path: String, destination: String?) throws -> H5File {
        prepareLibrary()
        let fapl = try H5Image.accessList(image: nil, path)
        defer { H5Pclose(fapl) }
        let fcpl = try H5Image.creationList(path)
        defer { H5Pclose(fcpl) }
        let id = try check(H5Fcreate(H5Image.memoryName(path), kv_H5F_ACC_TRUNC(), fcpl, fapl), "H5Fcreate", path, "/")
        return H5File(path: path, fileID: id, writable: true, destination: destination)
    }

    /// Creates (or, when closed, replaces) the file at `path`. The file is written on `close()`,
    /// atomically (see `writeAtomically`); `close()` throws if that fails.
    public static func create(_ path: String) throws -> H5File {
        let directory = parentDirectory(of: path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw H5Error.fileSystem(file: path, operation: "create", reason: "directory '\(directory)' does not exist")
        }
        return try createInMemory(path, destination: path)
    }

    /// Opens an existing file, read-only unless `writable` (then `close()` writes it back,
    /// atomically). A stamp is verified whenever the file carries one. Throws `fileNotFound`,
    /// `notHDF5`, `damaged` (its integrity stamp does not match: truncated, or bytes changed),
    /// `unstamped` (no stamp, and `requireStamp`: KVLab's own results files that are resumed,
    /// merged or compared; KVLAB_IGNORE_CHECKSUM=1 lifts it), or `libraryCall("H5Fopen", …)` for a
    /// file HDF5 refuses. Without `requireStamp` a file from another program (h5py, another
    /// harness, a fixture) is read as HDF5 reads it: nothing to verify it against.
    public static func open(_ path: String, writable: Bool = false, requireStamp: Bool = false) throws -> H5File {
        prepareLibrary()
        let bytes = try H5Image.readFile(path)
        return try bytes.withUnsafeBytes { image in
            switch H5Integrity.verify(image) {
            case .damaged(let reason) where !H5Integrity.ignoringMismatches:
                throw H5Error.damaged(file: path, reason: reason)
            case .unstamped:
                guard isHDF5Image(image) else { throw H5Error.notHDF5(file: path) }
                // Unverifiable: a damaged stamp (its first line overwritten) looks the same, so
                // files KVLab itself must have written (results it resumes, merges, compares) are refused.
                guard !requireStamp || H5Integrity.ignoringMismatches else { throw H5Error.unstamped(file: path) }
            default: break
            }
            let fapl = try H5Image.accessList(image: image, path)
            defer { H5Pclose(fapl) }
            let flags = writable ? kv_H5F_ACC_RDWR() : kv_H5F_ACC_RDONLY()
            let id = try check(H5Fopen(H5Image.memoryName(path), flags, fapl), "H5Fopen", path, "/")
            let file = H5File(path: path, fileID: id, writable: writable, destination: writable ? path : nil)
            if H5Integrity.verify(image) != .unstamped {
                file.userBlock = .stamp
            } else {
                file.userBlock = .bytes(Array(image.prefix(signatureOffset(image) ?? 0)))
            }
            return file
        }
    }

    /// Where the HDF5 signature is: 0, 512, 1024, ... (where HDF5 looks for it), or nil.
    static func signatureOffset(_ image: UnsafeRawBufferPointer) -> Int? {
        let signature: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]
        var offset = 0
        while offset + signature.count <= image.count {
            if image[offset ..< offset + signature.count].elementsEqual(signature) { return offset }
            offset = offset == 0 ? 512 : offset * 2
        }
        return nil
    }

    /// Whether the bytes carry the HDF5 signature.
    static func isHDF5Image(_ image: UnsafeRawBufferPointer) -> Bool { signatureOffset(image) != nil }

    /// Whether `path` is a readable file with an HDF5 signature.
    public static func isHDF5(_ path: String) -> Bool {
        prepareLibrary()
        guard FileManager.default.isReadableFile(atPath: path) else { return false }
        return H5Fis_hdf5(path) > 0
    }

    /// Writes a file crash-safely: `body` fills a new file (in memory; its `path` is the temporary
    /// `.<name>.tmp-<pid>-<random>` next to `path` that the image is then written to), which is
    /// closed, written, fsync'ed and renamed onto `path`. If `body` or any step throws (a full
    /// disk included), the temporary file is removed and an existing file at `path` is left
    /// untouched. The file handed to `body` is closed on return: don't keep it.
    public static func writeAtomically(to path: String, _ body: (H5File) throws -> Void) throws {
        let temporary = atomicTemporaryPath(for: path)
        let file = try createInMemory(temporary, destination: nil)
        let image: [UInt8]
        do {
            try body(file)
            image = try file.finish()
        } catch {
            try? file.close()
            throw error
        }
        try H5Image.writeAtomically(image, to: path, temporary: temporary)
    }

    /// Modifies the file at `path` crash-safely: it is read (and its stamp checked), opened
    /// writable in memory for `body`, and its new image replaces `path` atomically. On any error
    /// `path` is untouched. `requireStamp` as for `open`.
    public static func modifyAtomically(_ path: String, requireStamp: Bool = false, _ body: (H5File) throws -> Void) throws {
        let file = try open(path, writable: true, requireStamp: requireStamp)
        file.destination = nil
        let image: [UInt8]
        do {
            try body(file)
            image = try file.finish()
        } catch {
            try? file.close()
            throw error
        }
        try H5Image.writeAtomically(image, to: path)
    }

    /// Flushes buffered data into the in-memory file (it reaches the disk on `close()`).
    public func flush() throws {
        prepareLibrary()
        guard isOpen else { throw H5Error.fileClosed(file: path) }
        try check(H5Fflush(fileID, H5F_SCOPE_LOCAL), "H5Fflush", path, "/")
    }

    /// The stamped image of a writable file; closes it.
    private func finish() throws -> [UInt8] {
        prepareLibrary()
        guard isOpen else { throw H5Error.fileClosed(file: path) }
        for entry in openObjects.values { entry.object?.invalidate() }
        openObjects.removeAll()
        let image = try H5Image.image(of: fileID, path)   // from the superblock on
        try closeIdentifier()
        switch userBlock {
        case .stamp: return H5Integrity.stamped(image)
        case .bytes(let head): return head + image
        }
    }

    private func closeIdentifier() throws {
        let status = H5Fclose(fileID)
        fileID = -1
        try check(status, "H5Fclose", path, "/")
    }

    /// Closes the file and every group and dataset still open in it; a writable file is then
    /// written to its path (atomically). Idempotent.
    public func close() throws {
        guard isOpen else { return }
        prepareLibrary()
        if let target = destination {
            destination = nil
            let image: [UInt8]
            do { image = try finish() } catch { if isOpen { try? closeIdentifier() }; throw error }
            try H5Image.writeAtomically(image, to: target)
            return
        }
        for entry in openObjects.values { entry.object?.invalidate() }
        openObjects.removeAll()
        try closeIdentifier()
    }

    func register(_ object: H5Object) { openObjects[ObjectIdentifier(object)] = WeakObject(object) }
    func unregister(_ object: H5Object) { openObjects[ObjectIdentifier(object)] = nil }
}
