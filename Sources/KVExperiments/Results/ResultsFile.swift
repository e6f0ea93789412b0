// Reading a KVLab results file back (docs/results-schema.md).
import Foundation
import KVHDF5

/// A results file read into memory: provenance, models and every run, fully reconstructed.
public struct ResultsFile: Sendable, Equatable {
    /// The path it was read from.
    public var path: String
    /// Root attributes (`schemaVersion` is the file's).
    public var provenance: Provenance
    /// /model/<id> groups, sorted by group name.
    public var models: [ModelRecord]
    /// /runs/<index> groups, sorted by grid index.
    public var runs: [RunRecord]

    public init(path: String, provenance: Provenance, models: [ModelRecord], runs: [RunRecord]) {
        self.path = path; self.provenance = provenance; self.models = models; self.runs = runs
    }

    /// Reads the file at `path`. Refuses a file that is not HDF5, not a KVLab results file, or
    /// whose `schema_version` is missing or newer than `ResultsSchema.version` (naming both).
    /// `requireStamp`: refuse a file without KVLab's integrity stamp (`kvlab compare` sets it).
    public static func read(_ path: String, requireStamp: Bool = false) throws -> ResultsFile {
        let file = try ResultsIO.openResultsFile(path, requireStamp: requireStamp)
        defer { try? file.close() }
        let provenance = try ResultsIO.readRootProvenance(file)
        let models = try ResultsIO.readModels(file)
        var runs: [RunRecord] = []
        if file.root.exists("runs") {
            let group = try file.root.group("runs")
            runs = try group.memberNames().map { try ResultsIO.readRun(group.group($0), name: $0) }
            runs.sort { $0.index < $1.index }
        }
        return ResultsFile(path: path, provenance: provenance, models: models, runs: runs)
    }

    /// Only the provenance (root attributes) of the file at `path`, with the same checks as `read`.
    public static func readProvenance(_ path: String, requireStamp: Bool = false) throws -> Provenance {
        let file = try ResultsIO.openResultsFile(path, requireStamp: requireStamp)
        defer { try? file.close() }
        return try ResultsIO.readRootProvenance(file)
    }

    /// The run at grid index `index`, if the file holds it.
    public func run(index: Int) -> RunRecord? { runs.first { $0.index == index } }
}
