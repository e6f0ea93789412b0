// Pure-Swift helpers of KVHDF5 (no HDF5 calls): shapes, object paths, chunking and the
// file-system steps of the atomic write.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The number of elements of `shape` (1 for the scalar shape `[]`), or nil when a dimension is
/// negative or the product overflows `Int`.
func shapeElementCount(_ shape: [Int]) -> Int? {
    var count = 1
    for dim in shape {
        guard dim >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dim)
        if overflow { return nil }
        count = product
    }
    return count
}

/// The path of the object `name` (relative to `base`, or absolute when it starts with "/").
func joinObjectPath(_ base: String, _ name: String) -> String {
    if name.hasPrefix("/") { return name }
    return base.hasSuffix("/") ? base + name : base + "/" + name
}

/// How errors name an attribute: `<object path>@<attribute name>`.
func attributeObjectPath(_ object: String, _ name: String) -> String { object + "@" + name }

/// A chunk shape for a gzip-compressed dataset: the full shape, with its outermost dimension
/// that is still above 1 halved until a chunk holds at most `targetBytes` (HDF5 caps chunks at
/// 4 GiB; h5py aims at ≤ 1 MiB). Inner (row-major contiguous) dimensions are kept whole as long
/// as possible. Dimensions are at least 1, and never exceed the dataset's own.
func chunkShape(for shape: [Int], elementSize: Int, targetBytes: Int = 1 << 20) -> [Int] {
    var chunk = shape.map { max($0, 1) }
    func bytes() -> Double { chunk.reduce(Double(elementSize)) { $0 * Double($1) } }
    while bytes() > Double(targetBytes) {
        guard let i = chunk.firstIndex(where: { $0 > 1 }) else { break }
        chunk[i] = (chunk[i] + 1) / 2
    }
    return chunk
}

/// Validates a dataset or group name: not empty, no empty path components, no NUL.
func nameProblem(_ name: String) -> String? {
    if name.isEmpty { return "empty name" }
    if name.utf8.contains(0) { return "name contains a NUL character" }
    let trimmed = name.hasPrefix("/") ? String(name.dropFirst()) : name
    if trimmed.isEmpty { return "name '/' is not a member" }
    if trimmed.split(separator: "/", omittingEmptySubsequences: false).contains(where: \.isEmpty) {
        return "name '\(name)' has an empty path component"
    }
    return nil
}

// MARK: - File-system steps of the atomic write

/// A fresh temporary path in the directory of `path`: `<dir>/.<name>.tmp-<pid>-<random>`.
func atomicTemporaryPath(for path: String) -> String {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    let name = url.lastPathComponent
    let suffix = String(UInt32.random(in: 0 ... .max), radix: 16)
    return joinObjectPath(dir, ".\(name).tmp-\(getpid())-\(suffix)")
}

private func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) + " (errno \(code))" }

/// fsync(2)s a file (or, with `directory`, a directory) so that a later rename is durable.
/// Directory fsync failures are ignored: some file systems do not support it.
func fsyncPath(_ path: String, target: String, directory: Bool = false) throws {
    let fd = open(path, O_RDONLY)
    if fd < 0 {
        if directory { return }
        throw H5Error.fileSystem(file: target, operation: "open '\(path)' for fsync", reason: errnoText(errno))
    }
    defer { close(fd) }
    if fsync(fd) != 0 && !directory {
        throw H5Error.fileSystem(file: target, operation: "fsync '\(path)'", reason: errnoText(errno))
    }
}

/// rename(2)s `from` onto `to` (atomic within a file system).
func renamePath(_ from: String, to: String) throws {
    if rename(from, to) != 0 {
        throw H5Error.fileSystem(file: to, operation: "rename '\(from)'", reason: errnoText(errno))
    }
}

/// Removes a file, ignoring errors (used for clean-up of temporary files).
func removeFileQuietly(_ path: String) { _ = unlink(path) }

/// The directory containing `path` ("." for a bare name).
func parentDirectory(of path: String) -> String {
    URL(fileURLWithPath: path).deletingLastPathComponent().path
}
