// Checks `kvlab merge` makes before writing: a whole shard set, every grid point present, and
// (with --update) an existing output replaced only by a superset of its runs.
import Foundation

public enum MergeCheck {
    /// Checks that the shard files among `inputs` form one whole set (every i of one N) and that
    /// together the inputs hold every grid point of their config. Inputs that are not shard files
    /// (no `shard` attribute) are not checked. The grid comes from the config text stored in the
    /// first input; when it cannot be parsed (e.g. a model folder moved), only the set is checked
    /// and the returned notes say so. `plan` (a plan file) names which shard should have run a
    /// missing point; without it the plan is computed from the config.
    @discardableResult
    public static func check(_ inputs: [String], planFile: String? = nil) throws -> [String] {
        var notes: [String] = []
        var absent: [(path: String, shard: Int, count: Int)] = []
        var present: [(path: String, provenance: Provenance)] = []
        for input in inputs {
            if !FileManager.default.fileExists(atPath: input), let (_, i, n) = ShardFiles.parse(input) {
                absent.append((input, i, n)); continue
            }
            present.append((input, try ResultsFile.readProvenance(input, requireStamp: true)))
        }
        var sharded: [(path: String, shard: Int, count: Int)] = absent
        for (path, p) in present where !p.shard.isEmpty {
            let parts = p.shard.split(separator: "/").compactMap { Int($0) }
            guard parts.count == 2 else { continue }
            sharded.append((path, parts[0], parts[1]))
        }
        guard let first = sharded.first else { return notes }
        if let other = sharded.first(where: { $0.count != first.count }) {
            throw ClusterError.shardCountMismatch(file: first.path, shard: "\(first.shard)/\(first.count)",
                                                  otherFile: other.path, otherShard: "\(other.shard)/\(other.count)")
        }
        let n = first.count
        let have = Set(sharded.filter { s in !absent.contains { $0.path == s.path } }.map(\.shard))
        let missing = (0..<n).filter { !have.contains($0) }
        if !missing.isEmpty {
            let base = ShardFiles.parse(first.path)?.base
            let names = missing.map { i in
                absent.first { $0.shard == i }.map { "\($0.path): no such file" }
                    ?? base.map { "\(ShardFiles.path(output: $0 + ".h5", shard: i, count: n)) not among the inputs" } ?? "not among the inputs"
            }
            throw ClusterError.missingShards(count: n, missing: missing, expected: names)
        }
        // Every grid point in some input.
        guard let reference = present.first else { return notes }
        let config: ExperimentConfig
        do { config = try ExperimentConfig.parse(reference.provenance.configText, file: "\(reference.path) (stored config)") } catch {
            notes.append("not checked that every grid point is present: the stored config does not parse here (\(error.localizedDescription))")
            return notes
        }
        var held = Set<Int>()
        for (path, _) in present {
            let file = try ResultsIO.openResultsFile(path, requireStamp: true)
            defer { try? file.close() }
            for row in try ResultsIO.readRunRows(file) { held.insert(row.index) }
        }
        let grid = config.grid
        let gone = grid.filter { !held.contains($0.index) }
        if gone.isEmpty { return notes }
        let plan = try planFile.map { try ShardPlan.read($0, config: config) } ?? ShardPlan.plan(config, grid: grid, shards: n)
        var detail: [String] = []
        for s in 0..<n {
            let lost = gone.filter { plan.shardOf[$0.index - 1] == s }
            guard !lost.isEmpty else { continue }
            let file = sharded.first { $0.shard == s }?.path ?? "?"
            let shown = lost.prefix(3).map { "#\($0.index) \(ShardPlan.describe($0))" }.joined(separator: "; ")
            detail.append("shard \(s)/\(n) ('\(file)'): \(lost.count) of \(plan.indices(of: s).count) missing: \(shown)\(lost.count > 3 ? "; ..." : "")")
        }
        throw ClusterError.incomplete(missing: gone.count, of: grid.count, detail: detail)
    }

    /// `kvlab merge --update`: an existing `output` may be replaced only if it is a results file of
    /// the inputs' config whose every run (grid index and key) is in some input, so the merge
    /// loses nothing. Returns whether `output` exists (and may be replaced).
    public static func checkUpdate(output: String, inputs: [String]) throws -> Bool {
        guard FileManager.default.fileExists(atPath: output) else { return false }
        let old: (hash: String, rows: [ResultsIO.Row])
        do {
            let file = try ResultsIO.openResultsFile(output, requireStamp: true)
            defer { try? file.close() }
            old = (try ResultsIO.readRootProvenance(file).configHash, try ResultsIO.readRunRows(file))
        } catch {
            throw ClusterError.updateWouldLoseRuns(file: output, reason: "it is not a readable KVLab results file (\(error.localizedDescription))")
        }
        var keys: [Int: String] = [:]
        for input in inputs {
            let file = try ResultsIO.openResultsFile(input, requireStamp: true)
            defer { try? file.close() }
            let hash = try ResultsIO.readRootProvenance(file).configHash
            guard hash == old.hash else {
                throw ClusterError.updateWouldLoseRuns(file: output, reason: "it holds another config (config_hash \(old.hash)) than '\(input)' (\(hash))")
            }
            for row in try ResultsIO.readRunRows(file) where keys[row.index] == nil { keys[row.index] = row.key }
        }
        let lost = old.rows.filter { keys[$0.index] != $0.key }
        guard lost.isEmpty else {
            throw ClusterError.updateWouldLoseRuns(
                file: output, reason: "\(lost.count) of its runs are in no input (e.g. #\(lost[0].index) \(lost[0].label)); merge into another file")
        }
        return true
    }
}
