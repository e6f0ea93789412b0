// Shared helpers of the fuzz targets: inputs that the code under test reads from a file go to a
// per-process file in /dev/shm (memory), rewritten for every input.
import Foundation

public enum FuzzSupport {
    /// A scratch directory of this process (created once).
    public static let directory: String = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let d = "\(base)/kvlab-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    /// Writes `size` bytes at `data` to `<directory>/<name>` and returns the path.
    public static func file(_ name: String, _ data: UnsafePointer<UInt8>, _ size: Int) -> String {
        let path = directory + "/" + name
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot write \(path)")
        var done = 0
        while done < size {
            let n = write(fd, data + done, size - done)
            precondition(n > 0, "cannot write \(path)")
            done += n
        }
        close(fd)
        return path
    }

    /// The input split at the first occurrence of `separator`: (before, after or nil).
    public static func split(_ bytes: UnsafeBufferPointer<UInt8>, at separator: [UInt8]) -> (ArraySlice<UInt8>, ArraySlice<UInt8>?) {
        let all = Array(bytes)
        guard separator.count <= all.count else { return (all[...], nil) }
        for i in 0 ... (all.count - separator.count) where all[i ..< i + separator.count].elementsEqual(separator) {
            return (all[..<i], all[(i + separator.count)...])
        }
        return (all[...], nil)
    }
}
