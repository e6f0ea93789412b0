// Shard files on disk: their names, discovery in a folder, and whether a writer holds one.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Naming and discovery of the files `kvlab run --shard i/N` writes.
public enum ShardFiles {
    /// The file of shard `i` of `n` for a sweep whose output is `output`: `<output minus .h5>.shard<i>of<n>.h5`
    /// (the name `SweepRunner.outputPath` gives it).
    public static func path(output: String, shard i: Int, count n: Int) -> String {
        "\(base(of: output)).shard\(i)of\(n).h5"
    }

    /// The per-config folder of `kvlab slurm` (scripts, plan, logs): `<output minus .h5>.slurm`.
    public static func slurmFolder(output: String) -> String { base(of: output) + ".slurm" }

    /// The plan file `kvlab slurm` writes for `output`.
    public static func planPath(output: String) -> String { (slurmFolder(output: output) as NSString).appendingPathComponent("plan.tsv") }

    /// The output path without its `.h5` extension.
    public static func base(of output: String) -> String {
        output.hasSuffix(".h5") ? String(output.dropLast(3)) : output
    }

    /// (base, i, N) of a shard file name, nil for other names.
    public static func parse(_ path: String) -> (base: String, shard: Int, count: Int)? {
        guard path.hasSuffix(".h5") else { return nil }
        let stem = path.dropLast(3)
        guard let dot = stem.range(of: ".shard", options: .backwards) else { return nil }
        let tail = stem[dot.upperBound...]
        let parts = tail.components(separatedBy: "of")
        guard parts.count == 2, let i = Int(parts[0]), let n = Int(parts[1]), n > 0, (0..<n).contains(i),
              parts[0].allSatisfy(\.isNumber), parts[1].allSatisfy(\.isNumber) else { return nil }
        return (String(stem[..<dot.lowerBound]), i, n)
    }

    /// The shard sets in `directory` (not recursive), sorted by base then N: each shard's path is
    /// `directory/name` (just the name for "" or ".").
    public static func find(in directory: String) throws -> [(base: String, count: Int, files: [Int: String])] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory) } catch {
            throw ResultsError.failed(file: directory, reason: "cannot list the folder: \(error.localizedDescription)")
        }
        var sets: [String: (base: String, count: Int, files: [Int: String])] = [:]
        for name in names.sorted() where !name.hasPrefix(".") {
            let path = directory.isEmpty || directory == "." ? name : (directory as NSString).appendingPathComponent(name)
            guard let (base, i, n) = parse(path) else { continue }
            sets["\(base)\u{0}\(n)", default: (base, n, [:])].files[i] = path
        }
        return sets.values.sorted { $0.base != $1.base ? $0.base < $1.base : $0.count < $1.count }
    }

    /// The shard files of the sweep whose output is `output`, one set per N (ascending).
    public static func find(output: String) throws -> [(count: Int, files: [Int: String])] {
        let directory = (output as NSString).deletingLastPathComponent
        guard FileManager.default.fileExists(atPath: directory.isEmpty ? "." : directory) else { return [] }
        let want = base(of: output)
        return try find(in: directory).filter { $0.base == want }.map { ($0.count, $0.files) }
    }

    /// Whether a `kvlab run` holds the writer's lock of the results file at `path` (its lock file,
    /// `ResultsStore.lockPath`, is flock'ed while the run is alive; the kernel drops the lock when
    /// the process dies, even by SIGKILL). The probe takes a shared lock and drops it at once; a
    /// writer starting in that instant would be refused as "locked" (a window of microseconds).
    public static func isLocked(_ path: String) -> Bool {
        let lock = ResultsStore.lockPath(for: path)
        let fd = open(lock, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { _ = close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            _ = flock(fd, LOCK_UN)
            return false
        }
        return errno == EWOULDBLOCK
    }
}
