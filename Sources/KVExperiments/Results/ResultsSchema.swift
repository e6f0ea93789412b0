// The HDF5 layout of a KVLab results file (docs/results-schema.md): names, version, errors.
// The writers and readers themselves are in ResultsIO.swift.
import Foundation

/// The results file format: names and the schema version written by this build.
public enum ResultsSchema {
    /// The schema version this build writes and the newest it reads (root attribute `schema_version`).
    public static let version = 1
    /// The summary's fixed columns in display order (`index`, `context`, `seed` are int64, the
    /// others strings); the metric columns (float64) follow.
    public static let fixedColumns = ["run", "index", "key", "model", "task", "context", "seed",
                                      "policy", "family", "label", "params", "status"]
    /// Attribute names of a /runs/<index> group that metric names must not take.
    public static let reservedRunAttributes: Set<String> = Set(fixedColumns + [
        "metrics", "info", "committed", "git_commit", "kvlab_version", "host"])

    /// The group name of grid index `index` under /runs: zero-padded to 6 digits.
    public static func runName(_ index: Int) -> String {
        let digits = String(index)
        return digits.count >= 6 ? digits : String(repeating: "0", count: 6 - digits.count) + digits
    }
}

/// An error of the results store, reader, merge or report. Every case names the file concerned.
public enum ResultsError: LocalizedError, Equatable, Sendable {
    /// The file holds results of another configuration (grid); nothing is overwritten without --force.
    case configMismatch(file: String, fileHash: String, requestedHash: String)
    /// The file exists but cannot be read as HDF5 (e.g. damaged); it is left untouched.
    case unreadable(file: String, reason: String)
    /// A results file to resume, merge or compare carries no KVLab integrity stamp.
    case unstamped(file: String)
    /// The file is HDF5 but not a KVLab results file (root attributes missing).
    case notResultsFile(file: String, reason: String)
    /// The file's schema version is missing or newer than this build reads.
    case unsupportedSchema(file: String, found: Int?, supported: Int)
    /// A run to commit clashes with one in the file (same grid index).
    case duplicateRun(file: String, index: Int, key: String, existingKey: String)
    /// A model of the same id but another identity (config or weights hash) is already in the file.
    case modelMismatch(file: String, id: String, reason: String)
    /// Merge inputs come from different configurations.
    case mergeConfigMismatch(file: String, fileHash: String, reference: String, referenceHash: String)
    /// Two merge inputs hold different runs under the same grid index.
    case mergeConflict(index: Int, file: String, key: String, otherFile: String, otherKey: String)
    /// The output exists and would be overwritten (pass force).
    case outputExists(file: String)
    /// Another process (or store object) is writing this results file.
    case locked(file: String)
    /// A run record cannot be stored as given (bad metric name, shape mismatch...).
    case invalidRun(file: String, index: Int, reason: String)
    /// A report column that the file does not have.
    case unknownColumn(name: String, valid: [String])
    /// Anything else (file system, HDF5 details).
    case failed(file: String, reason: String)

    public var errorDescription: String? {
        switch self {
        case let .configMismatch(f, fileHash, requested):
            return "'\(f)' holds results of another config (config_hash \(fileHash)); this config has config_hash \(requested). " +
                "Use another output file, or --force to start a new file (the old one is kept as '\(f).bak-<time>')"
        case let .unstamped(f):
            return "'\(f)' carries no KVLab integrity stamp (written by another program, by a KVLab older than the stamp, " +
                "or its header was overwritten); results that are resumed, merged or compared must carry one, since damage " +
                "could not be told from results. It was left untouched. If you trust it, set KVLAB_IGNORE_CHECKSUM=1 " +
                "(`KVLAB_IGNORE_CHECKSUM=1 kvlab merge new.h5 '\(f)'` writes a stamped copy), or give `kvlab run` --force to set it aside and start a new file"
        case let .unreadable(f, reason):
            return "'\(f)' exists but is not a readable HDF5 file (\(reason)); it was left untouched. " +
                "Move it away, or rerun with --force to set it aside as '\(f).bak-<time>' and start a new file"
        case let .notResultsFile(f, reason):
            return "'\(f)' is not a KVLab results file (\(reason)); it was left untouched. " +
                "Choose another output, or --force to set it aside as '\(f).bak-<time>'"
        case let .unsupportedSchema(f, found, supported):
            let what = found.map { "schema_version \($0)" } ?? "no schema_version attribute"
            return "'\(f)' has \(what); this kvlab reads results schema versions 1...\(supported)" +
                (found.map { $0 > supported ? " (the file was written by a newer kvlab)" : "" } ?? "")
        case let .duplicateRun(f, index, key, existing):
            return existing == key
                ? "'\(f)': run \(index) (\(key)) is already committed; a run is never stored twice"
                : "'\(f)': grid index \(index) already holds another run (\(existing)); refusing to store \(key) there"
        case let .modelMismatch(f, id, reason):
            return "'\(f)': model '\(id)' differs: \(reason)"
        case let .mergeConfigMismatch(f, hash, reference, referenceHash):
            return "cannot merge '\(f)' (config_hash \(hash)) with '\(reference)' (config_hash \(referenceHash)): " +
                "shards must come from the same config"
        case let .mergeConflict(index, f, key, other, otherKey):
            return "grid index \(index) holds different runs in '\(f)' (\(key)) and '\(other)' (\(otherKey))"
        case let .outputExists(f):
            return "'\(f)' exists; pass --force to replace it"
        case let .locked(f):
            return "'\(f)' is being written by another kvlab process (lock '\(ResultsStore.lockPath(for: f))' is held)"
        case let .invalidRun(f, index, reason):
            return "'\(f)': run \(index) cannot be stored: \(reason)"
        case let .unknownColumn(name, valid):
            return "unknown column '\(name)'; valid columns: \(valid.joined(separator: ", "))"
        case let .failed(f, reason):
            return "'\(f)': \(reason)"
        }
    }
}
