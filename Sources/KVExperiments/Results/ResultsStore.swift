// The crash-safe writer of a results file.
//
// HDF5 files open for writing can be left unreadable by a crash mid-write (the metadata cache is
// not journaled), so the file at `path` is never modified in place. Every commit builds a whole
// new file next to it, `.<name>.tmp-<pid>-<random>`, fsyncs it and renames it over `path`: a
// kill at any moment leaves either the previous file or the new one, both complete. The new file
// is built one of two ways:
// - append (the usual case): the current file, read into memory (finished runs stay
//   byte-identical), gets the new run groups and a rebuilt /summary. Each append leaves the
//   replaced summary's space unused in the file (HDF5 does not reclaim it);
// - rewrite (compaction): a fresh file with the provenance, the models, every committed run
//   copied from the current one (see `copyRun`), the new runs and the summary. Done when the
//   file has grown to twice its size after the last rewrite (and at least 1 MiB more), so the
//   wasted space stays below the live data and the cost per commit stays proportional to the
//   file size; and by `close()`/`compact()`.
// A lock file (`.<name>.lock`, flock; ResultsLock.swift, shared with `kvlab merge`) keeps two
// writers off one file, keyed by its real path. A run committed with an error status can be
// committed again (a rerun retries it); the new record replaces the failed one.
import Foundation
import KVHDF5
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes finished runs to a results file, one atomic replacement of the file per commit. Not
/// thread-safe: use one store from one thread at a time.
public final class ResultsStore {
    /// The results file.
    public let path: String
    /// The file's provenance (the one it was created with; a resumed file keeps it, and each run
    /// records the kvlab version, git commit, host and time of its own commit).
    public private(set) var provenance: Provenance
    /// The models stored in the file.
    public private(set) var models: [ModelRecord]
    /// Committed runs: grid index -> key.
    public private(set) var finished: [Int: String] = [:]
    /// Where `open(force: true)` set an older file aside (`<path>.bak-<UTC time>`), if it did.
    public private(set) var backupPath: String?

    /// Summary rows of the committed runs, sorted by grid index.
    private var rows: [ResultsIO.Row] = []
    /// The file's size after the last rewrite (or when opened).
    private var compactSize = 0
    private let writer: Provenance
    private var lock: ResultsLock?
    /// The file as this store last wrote or read it (device, inode, size, mtime): a file replaced
    /// behind the store's back is refused, not overwritten with a stale view of its runs.
    private var lastSeen: FileOps.Identity?

    private init(path: String, provenance: Provenance, models: [ModelRecord], writer: Provenance, lock: ResultsLock) {
        self.path = path; self.provenance = provenance; self.models = models; self.writer = writer; self.lock = lock
    }

    deinit { releaseLock() }

    /// The lock file of the results file at `path` (symlinks resolved): `<dir>/.<name>.lock`.
    public static func lockPath(for path: String) -> String { ResultsLock.lockPath(for: path) }

    /// Opens the results file at `path` for writing, creating it (with no runs) when absent.
    ///
    /// - An existing results file of the same `config_hash` is resumed: `finished` lists its runs.
    /// - One of another config (or not a readable KVLab results file, or of an unsupported schema
    ///   version, or holding a model of the same id with other hashes) is refused; with `force`
    ///   it is renamed to `<path>.bak-<UTC time>` (never deleted) and a new file is started.
    /// - `models` are added to the file's models.
    /// - `provenance.schemaVersion` is ignored: the file gets `ResultsSchema.version`; an empty
    ///   `created` is filled with the current UTC time.
    /// - A file of another shard (its `shard` attribute differs from `provenance.shard`) is
    ///   refused like another config's: one file holds one shard (or the whole grid).
    /// Left-over temporary files of killed writers (`.<name>.tmp-*`) are removed. `path` may be a
    /// symlink: the store writes (and locks) the file it points to.
    public static func open(path: String, provenance: Provenance, models: [ModelRecord], force: Bool) throws -> ResultsStore {
        var writer = provenance
        writer.schemaVersion = ResultsSchema.version
        if writer.created.isEmpty { writer.created = ResultsIO.utcNow() }
        let newModels = try uniqueModels(models, file: path)

        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ResultsError.failed(file: path, reason: "is a directory, not a results file")
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let lock = try ResultsLock.acquire(path)
        let store = ResultsStore(path: lock.path, provenance: writer, models: newModels, writer: writer, lock: lock)
        do {
            lock.removeStaleTemporaries()
            if FileManager.default.fileExists(atPath: store.path) {
                do {
                    try store.load(requested: writer, models: newModels)
                    return store
                } catch let error as ResultsError {
                    guard force else { throw error }
                    store.backupPath = try setAside(store.path)
                    store.provenance = writer; store.models = newModels; store.finished = [:]; store.rows = []
                }
            }
            try store.rewrite(adding: [])
            return store
        } catch {
            store.releaseLock()
            throw error
        }
    }

    /// Whether run `index` is committed with this `key`, whatever its status.
    public func isFinished(index: Int, key: String) -> Bool { finished[index] == key }

    /// Whether run `index` is committed with an error status (a rerun retries it).
    public func isFailed(index: Int) -> Bool { failedIndices.contains(index) }

    /// Grid indices committed with a status other than "ok".
    public private(set) var failedIndices: Set<Int> = []

    /// Commits one finished run (one atomic replacement of the file). A grid index that is
    /// already committed is refused, unless it failed before and `run` has the same key: the new
    /// record then replaces the failed one.
    public func commit(_ run: RunRecord) throws { try commitBatch([run]) }

    /// Commits several finished runs with one replacement of the file: all of them or none.
    public func commitBatch(_ runs: [RunRecord]) throws {
        guard lock != nil else { throw ResultsError.failed(file: path, reason: "the results store is closed") }
        if runs.isEmpty { return }
        var batch: [Int: String] = [:]
        var replaced: Set<Int> = []
        for r in runs {
            try ResultsIO.validate(r, file: path)
            if let existing = batch[r.index] {
                throw ResultsError.duplicateRun(file: path, index: r.index, key: r.key, existingKey: existing)
            }
            if let existing = finished[r.index] {
                guard existing == r.key, failedIndices.contains(r.index) else {
                    throw ResultsError.duplicateRun(file: path, index: r.index, key: r.key, existingKey: existing)
                }
                replaced.insert(r.index)
            }
            batch[r.index] = r.key
        }
        try checkUnchanged()
        let size = FileOps.fileSize(path)
        if commitMode == .rewriteEveryCommit || size - compactSize > max(compactSize, Self.slack) {
            try rewrite(adding: runs, replacing: replaced)
        } else {
            try append(runs, replacing: replaced)
        }
    }

    /// Rewrites the file without the space left by replaced summaries (done by `close()` too).
    public func compact() throws {
        guard lock != nil else { throw ResultsError.failed(file: path, reason: "the results store is closed") }
        try checkUnchanged()
        if FileOps.fileSize(path) > compactSize { try rewrite(adding: []) }
    }

    /// Compacts the file if appends left unused space in it (best effort: the file is complete
    /// either way), then releases the lock. Further commits throw. Idempotent.
    public func close() {
        guard lock != nil else { return }
        try? compact()
        releaseLock()
    }

    /// Growth (bytes) tolerated before a commit compacts, on top of the size after the last rewrite.
    static let slack = 1 << 20
    /// How a commit writes the file: by default it appends the run and rewrites (compacts) only
    /// once appends have grown the file by more than `slack`; `.rewriteEveryCommit` takes the
    /// compaction path every time (what the crash tests exercise). Per store, set after `open`.
    public enum CommitMode: Sendable { case appendUntilSlack, rewriteEveryCommit }
    public var commitMode: CommitMode = .appendUntilSlack

    // MARK: - Internals

    private func releaseLock() {
        lock?.release()
        lock = nil
    }

    /// Refuses to write when the file is not the one this store last wrote or read (replaced or
    /// removed by another program, which the lock cannot stop).
    private func checkUnchanged() throws {
        guard let seen = lastSeen else { return }
        let now = FileOps.identity(path)
        guard now == seen else {
            throw ResultsError.failed(file: path, reason: now == nil
                ? "the file was removed while this sweep was writing it; nothing more is written"
                : "the file was replaced or modified by another program while this sweep was writing it; nothing more is written (rerun to resume from what the file holds)")
        }
    }

    /// Loads an existing file of the same config; throws a ResultsError for anything else.
    private func load(requested: Provenance, models requestedModels: [ModelRecord]) throws {
        let stored: Provenance
        let storedModels: [ModelRecord]
        let storedRows: [ResultsIO.Row]
        do {
            let file = try ResultsIO.openResultsFile(path, requireStamp: true)   // resumed: KVLab's own, verified
            defer { try? file.close() }
            stored = try ResultsIO.readRootProvenance(file)
            guard stored.configHash == requested.configHash else {
                throw ResultsError.configMismatch(file: path, fileHash: stored.configHash, requestedHash: requested.configHash)
            }
            guard stored.shard == requested.shard else {
                func name(_ s: String) -> String { s.isEmpty ? "the whole grid (no shard)" : "shard \(s)" }
                throw ResultsError.failed(file: path, reason: "it holds \(name(stored.shard)), this run is \(name(requested.shard)); " +
                    "use another --output (each shard has its own file; combine them with `kvlab merge`), or --force to start a new file")
            }
            storedModels = try ResultsIO.readModels(file)
            storedRows = try ResultsIO.readRunRows(file)
        } catch let error as H5Error {
            throw ResultsError.unreadable(file: path, reason: error.localizedDescription)
        }
        var merged = storedModels
        for m in requestedModels {
            if let old = storedModels.first(where: { $0.id == m.id }) {
                if old.configHash != m.configHash {
                    throw ResultsError.modelMismatch(file: path, id: m.id,
                                                     reason: "config_hash \(old.configHash) in the file, \(m.configHash) now; " +
                                                        "use another output file, or --force to start a new one")
                }
                if old.weightsHash != m.weightsHash {
                    throw ResultsError.modelMismatch(file: path, id: m.id,
                                                     reason: "weights_hash \(old.weightsHash) in the file, \(m.weightsHash) now; " +
                                                        "use another output file, or --force to start a new one")
                }
            } else {
                merged.append(m)
            }
        }
        provenance = stored
        models = merged
        rows = storedRows
        finished = Dictionary(rows.map { ($0.index, $0.key) }, uniquingKeysWith: { a, _ in a })
        failedIndices = Set(rows.filter { $0.status != "ok" }.map(\.index))
        compactSize = FileOps.fileSize(path)
        lastSeen = FileOps.identity(path)
        if merged.count != storedModels.count { try rewrite(adding: []) }
    }

    private func stamp() -> ResultsIO.Stamp {
        ResultsIO.Stamp(kvlabVersion: writer.kvlabVersion, gitCommit: writer.gitCommit, host: writer.host, committed: ResultsIO.utcNow())
    }

    /// Writes a new file (provenance, models, committed runs copied, `runs`, summary) and renames
    /// it over `path`.
    private func rewrite(adding runs: [RunRecord], replacing replaced: Set<Int> = []) throws {
        let stamp = stamp()
        let committed = rows.filter { !replaced.contains($0.index) }
        let added = runs.map { ResultsIO.Row($0, stamp: stamp) }
        try H5File.writeAtomically(to: path) { out in
            try ResultsIO.writeProvenance(provenance, to: out.root)
            try ResultsIO.writeModels(models, to: out.root)
            let group = try out.root.createGroup("runs")
            if !committed.isEmpty {
                let current = try H5File.open(path, requireStamp: true)
                defer { try? current.close() }
                let source = try current.root.group("runs")
                for row in committed { try ResultsIO.copyRun(row, from: source, to: group) }
            }
            for r in runs { try ResultsIO.writeRun(r, stamp: stamp, to: group) }
            try ResultsIO.writeSummary(committed + added, to: out.root)
        }
        compactSize = FileOps.fileSize(path)
        lastSeen = FileOps.identity(path)
        record(added)
    }

    /// Reads the file (finished runs stay byte-identical), adds `runs` and a new /summary in memory,
    /// and replaces `path` with the result atomically (H5File.modifyAtomically).
    private func append(_ runs: [RunRecord], replacing replaced: Set<Int> = []) throws {
        let stamp = stamp()
        let added = runs.map { ResultsIO.Row($0, stamp: stamp) }
        let all = rows.filter { !replaced.contains($0.index) } + added
        let removed = rows.filter { replaced.contains($0.index) }.map(\.run)
        try H5File.modifyAtomically(path, requireStamp: true) { file in
            let group = try file.root.group("runs")
            for name in removed { try group.remove(name) }
            for r in runs { try ResultsIO.writeRun(r, stamp: stamp, to: group) }
            try file.root.remove("summary")
            try ResultsIO.writeSummary(all, to: file.root)
        }
        lastSeen = FileOps.identity(path)
        record(added)
    }

    private func record(_ added: [ResultsIO.Row]) {
        let replaced = Set(added.map(\.index))
        rows.removeAll { replaced.contains($0.index) }
        for row in added {
            finished[row.index] = row.key
            if row.status == "ok" { failedIndices.remove(row.index) } else { failedIndices.insert(row.index) }
            rows.append(row)
        }
        if zip(rows, rows.dropFirst()).contains(where: { $0.index > $1.index }) { rows.sort { $0.index < $1.index } }
    }

    private static func uniqueModels(_ models: [ModelRecord], file: String) throws -> [ModelRecord] {
        var result: [ModelRecord] = []
        for m in models {
            if let other = result.first(where: { $0.id == m.id }) {
                if other != m { throw ResultsError.modelMismatch(file: file, id: m.id, reason: "given twice, differently") }
                continue
            }
            result.append(m)
        }
        return result
    }

    /// Renames `path` to `<path>.bak-<UTC time>` (with a counter if taken); returns the new path.
    private static func setAside(_ path: String) throws -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        let base = "\(path).bak-\(f.string(from: Date()))"
        var candidate = base
        var n = 1
        while FileManager.default.fileExists(atPath: candidate) { n += 1; candidate = "\(base)-\(n)" }
        guard rename(path, candidate) == 0 else {
            throw ResultsError.failed(file: path, reason: "cannot rename it to '\(candidate)': \(String(cString: strerror(errno)))")
        }
        return candidate
    }
}

/// File-system steps of the store (POSIX).
private enum FileOps {
    /// What identifies one version of a file: a rename over it or a write changes it.
    struct Identity: Equatable { var device: UInt64, inode: UInt64, size: Int64, mtime: Int, mtimeNanos: Int }

    static func identity(_ path: String) -> Identity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        #if os(Linux)
        let t = info.st_mtim
        #else
        let t = info.st_mtimespec
        #endif
        return Identity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino), size: Int64(info.st_size),
                        mtime: Int(t.tv_sec), mtimeNanos: Int(t.tv_nsec))
    }

    /// The size of the file at `path` in bytes (0 when unknown).
    static func fileSize(_ path: String) -> Int {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : 0
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}
