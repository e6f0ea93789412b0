import Foundation
internal import CHDF5

// MARK: - File

/// An open HDF5 file. Create one with `create`, `open` or `writeAtomically`; closed by `close()`
/// or when released. Files are written in the HDF5 1.8 object format (readable by h5py and any
/// HDF5 ≥ 1.8).
public final class H5File {
    /// The path the file was opened or created with.
    public let path: String
    /// Whether the file was opened for writing.
    public let isWritable: Bool
    var fileID: hid_t
    private final class WeakObject { weak var object: H5Object?; init(_ o: H5Object) { object = o } }
    private var openObjects: [ObjectIdentifier: WeakObject] = [:]

    private init(path: String, fileID: hid_t, writable: Bool) {
        self.path = path
        self.fileID = fileID
        self.isWritable = writable
    }

    deinit { try? close() }

    /// Whether the file is still open.
    public var isOpen: Bool { fileID >= 0 }

    /// The root group "/".
    public var root: H5Group { H5Group(file: self, id: fileID, path: "/", ownsID: false) }

    private static func fileAccessList(_ path: String) throws -> hid_t {
        let fapl = try check(H5Pcreate(kv_H5P_FILE_ACCESS()), "H5Pcreate", path, "/")
        do {
            // The 1.8 format: compatible, and it stores large attributes densely.
            try check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), "H5Pset_libver_bounds", path, "/")
        } catch { H5Pclose(fapl); throw error }
        return fapl
    }

    /// Creates (or truncates) the file at `path`.
    public static func create(_ path: String) throws -> H5File {
        try create(path, flags: kv_H5F_ACC_TRUNC())
    }

    private static func create(_ path: String, flags: UInt32) throws -> H5File {
        prepareLibrary()
        let fapl = try fileAccessList(path)
        defer { H5Pclose(fapl) }
        let id = try check(H5Fcreate(path, flags, kv_H5P_DEFAULT(), fapl), "H5Fcreate", path, "/")
        return H5File(path: path, fileID: id, writable: true)
    }

    /// Opens an existing file, read-only unless `writable`. Throws `fileNotFound`, `notHDF5`, or
    /// `libraryCall("H5Fopen", …)` for a damaged (e.g. truncated) file.
    public static func open(_ path: String, writable: Bool = false) throws -> H5File {
        prepareLibrary()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw H5Error.fileNotFound(file: path)
        }
        guard try check(H5Fis_hdf5(path), "H5Fis_hdf5", path, "/") > 0 else { throw H5Error.notHDF5(file: path) }
        let fapl = try fileAccessList(path)
        defer { H5Pclose(fapl) }
        let flags = writable ? kv_H5F_ACC_RDWR() : kv_H5F_ACC_RDONLY()
        let id = try check(H5Fopen(path, flags, fapl), "H5Fopen", path, "/")
        return H5File(path: path, fileID: id, writable: writable)
    }

    /// Whether `path` is a readable file with an HDF5 signature.
    public static func isHDF5(_ path: String) -> Bool {
        prepareLibrary()
        return FileManager.default.isReadableFile(atPath: path) && H5Fis_hdf5(path) > 0
    }

    /// Writes a file crash-safely: `body` fills a new file created next to `path` (named
    /// `.<name>.tmp-<pid>-<random>`), which is then closed, fsync'ed and renamed onto `path`.
    /// If `body` (or any step) throws, the temporary file is removed and an existing file at
    /// `path` is left untouched. The file handed to `body` is closed on return: don't keep it.
    public static func writeAtomically(to path: String, _ body: (H5File) throws -> Void) throws {
        let temporary = atomicTemporaryPath(for: path)
        let file = try create(temporary, flags: kv_H5F_ACC_EXCL())
        do {
            try body(file)
            try file.close()
            try fsyncPath(temporary, target: path)
            try renamePath(temporary, to: path)
        } catch {
            try? file.close()
            removeFileQuietly(temporary)
            throw error
        }
        try? fsyncPath(parentDirectory(of: path), target: path, directory: true)
    }

    /// Flushes buffered data to the file.
    public func flush() throws {
        prepareLibrary()
        guard isOpen else { throw H5Error.fileClosed(file: path) }
        try check(H5Fflush(fileID, H5F_SCOPE_LOCAL), "H5Fflush", path, "/")
    }

    /// Closes the file and every group and dataset still open in it. Idempotent.
    public func close() throws {
        guard isOpen else { return }
        prepareLibrary()
        for entry in openObjects.values { entry.object?.invalidate() }
        openObjects.removeAll()
        let status = H5Fclose(fileID)
        fileID = -1
        try check(status, "H5Fclose", path, "/")
    }

    func register(_ object: H5Object) { openObjects[ObjectIdentifier(object)] = WeakObject(object) }
    func unregister(_ object: H5Object) { openObjects[ObjectIdentifier(object)] = nil }
}
