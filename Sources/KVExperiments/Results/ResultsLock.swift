// The writer's lock of a results file, shared by `kvlab run` (ResultsStore) and `kvlab merge`.
//
// One lock per file, keyed by the file's real path: a symlink to the file, or the file reached
// through a symlinked directory, takes the same lock file (`<real dir>/.<real name>.lock`, flock).
// Whoever holds it may also remove temporary files that killed writers left next to the file
// (`.<name>.tmp-<pid>-<random>`, from H5File.writeAtomically): nobody else can be writing them.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive flock on a results file's lock file; released by `release()` or deinit.
public final class ResultsLock {
    /// The file the lock guards, symlinks resolved (what writers must write to).
    public let path: String
    /// The lock file.
    public let lockPath: String
    private var fd: Int32

    private init(path: String, lockPath: String, fd: Int32) { self.path = path; self.lockPath = lockPath; self.fd = fd }
    deinit { release() }

    /// The real path of `path`: symlinks resolved for the file itself when it exists, else for its
    /// directory (the file may not exist yet). Relative paths are taken from the current directory.
    public static func realPath(_ path: String) -> String {
        if let resolved = resolve(path) { return resolved }
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        let base = resolve(dir) ?? URL(fileURLWithPath: dir).standardizedFileURL.path
        return URL(fileURLWithPath: base).appendingPathComponent(url.lastPathComponent).path
    }

    private static func resolve(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// The lock file of the results file at `path` (after resolving symlinks): `<dir>/.<name>.lock`.
    public static func lockPath(for path: String) -> String {
        let url = URL(fileURLWithPath: realPath(path))
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).lock").path
    }

    /// Takes the lock of the results file at `path` without waiting: `ResultsError.locked` when
    /// another writer (a sweep, a merge) holds it.
    public static func acquire(_ path: String) throws -> ResultsLock {
        let real = realPath(path)
        let lock = lockPath(for: real)
        let fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ResultsError.failed(file: path, reason: "cannot create lock file '\(lock)': \(String(cString: strerror(errno)))")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let code = errno
            _ = close(fd)
            if code == EWOULDBLOCK { throw ResultsError.locked(file: path) }
            throw ResultsError.failed(file: path, reason: "cannot lock '\(lock)': \(String(cString: strerror(code)))")
        }
        return ResultsLock(path: real, lockPath: lock, fd: fd)
    }

    public var isHeld: Bool { fd >= 0 }

    public func release() {
        if fd >= 0 { _ = flock(fd, LOCK_UN); _ = close(fd) }
        fd = -1
    }

    /// Removes `.<name>.tmp-*` files of writers killed mid-write (safe: the lock is held). Returns
    /// how many were removed.
    @discardableResult
    public func removeStaleTemporaries() -> Int {
        guard isHeld else { return 0 }
        let url = URL(fileURLWithPath: path)
        let prefix = ".\(url.lastPathComponent).tmp-"
        let directory = url.deletingLastPathComponent()
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return 0 }
        var removed = 0
        for name in names where name.hasPrefix(prefix) {
            if (try? FileManager.default.removeItem(at: directory.appendingPathComponent(name))) != nil { removed += 1 }
        }
        return removed
    }
}
