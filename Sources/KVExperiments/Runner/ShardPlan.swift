// Which shard runs which grid point: a deterministic assignment balanced by estimated cost.
import Foundation

/// A config's grid points assigned to N shards (`kvlab run --shard i/N`, `kvlab slurm`).
///
/// `make` is greedy longest-processing-time with group affinity, deterministic for a config and N:
/// points are taken in order of decreasing estimated cost (`CostModel.cost`; ties by grid index);
/// the N largest go one to each shard, and every later point to the shard whose estimated total
/// after taking it is least. A shard pays the full-cache reference of a (model, task) once, for its
/// first point of that group, so a point is cheaper where its group already is. Ties: the lighter
/// shard, then the lower shard number. Within a shard, points run in grid order (one reference per
/// group). The plan depends on the config's grid, the model shapes (config.json) and the cost
/// model's constants; `kvlab slurm` writes it to a file (`text()`, `read`) that array tasks use, so
/// a requeued task resumes exactly its own points even if kvlab's cost model changed meanwhile.
public struct ShardPlan: Equatable, Sendable {
    /// Version of the plan file format.
    public static let fileVersion = 1

    /// N.
    public let count: Int
    /// The grid's `config_hash` (`ExperimentConfig.gridHash`).
    public let configHash: String
    /// Shard of each grid point, indexed by grid index - 1.
    public let shardOf: [Int]
    /// Estimated FLOP-equivalents of each grid point's run (grid index - 1).
    public let pointCost: [Double]
    /// Estimated FLOP-equivalents of each shard: its runs plus one reference per (model, task) it runs.
    public let shardCost: [Double]

    /// Grid indices of shard `i`, in run order.
    public func indices(of shard: Int) -> [Int] { shardOf.indices.filter { shardOf[$0] == shard }.map { $0 + 1 } }

    /// Most expensive shard's estimate over the cheapest one's (1 = perfectly balanced).
    public var imbalance: Double {
        guard let hi = shardCost.max(), let lo = shardCost.min(), lo > 0 else { return .infinity }
        return hi / lo
    }

    /// The cost-balanced plan of `config` over `shards` shards. Throws when `shards` < 1 or larger
    /// than the number of grid points (a shard with nothing to run).
    public static func make(_ config: ExperimentConfig, shards: Int) throws -> ShardPlan {
        let grid = config.grid
        guard shards >= 1 else { throw ClusterError.badShards(config: config.file, shards: shards, points: grid.count) }
        guard shards <= grid.count else { throw ClusterError.badShards(config: config.file, shards: shards, points: grid.count) }
        return plan(config, grid: grid, shards: shards)
    }

    /// Like `make`, but shards beyond the grid's size are left empty (what `kvlab run --shard`
    /// does with such an N: nothing to run).
    static func plan(_ config: ExperimentConfig, grid: [GridPoint], shards: Int) -> ShardPlan {
        let c = Costs(config, grid: grid)
        let order = grid.indices.sorted { c.point[$0] != c.point[$1] ? c.point[$0] > c.point[$1] : $0 < $1 }
        var load = [Double](repeating: 0, count: shards)
        var groups = [Set<RunKey>](repeating: [], count: shards)
        var shardOf = [Int](repeating: 0, count: grid.count)
        for (k, i) in order.enumerated() {
            let g = c.group[i]
            func extra(_ s: Int) -> Double { groups[s].contains(g) ? 0 : c.reference[g]! }
            let s = k < shards ? k : (0..<shards).min { a, b in
                let x = load[a] + extra(a), y = load[b] + extra(b)
                return x != y ? x < y : (load[a] != load[b] ? load[a] < load[b] : a < b)
            }!
            load[s] += c.point[i] + extra(s)
            groups[s].insert(g)
            shardOf[i] = s
        }
        return ShardPlan(count: shards, configHash: config.gridHash, shardOf: shardOf, pointCost: c.point,
                         shardCost: c.shardCosts(shardOf, shards: shards))
    }

    /// The plan with a given assignment (e.g. read from a file), costs estimated now.
    init(_ config: ExperimentConfig, grid: [GridPoint], count: Int, shardOf: [Int]) {
        let c = Costs(config, grid: grid)
        self.init(count: count, configHash: config.gridHash, shardOf: shardOf, pointCost: c.point,
                  shardCost: c.shardCosts(shardOf, shards: count))
    }

    private init(count: Int, configHash: String, shardOf: [Int], pointCost: [Double], shardCost: [Double]) {
        self.count = count; self.configHash = configHash; self.shardOf = shardOf
        self.pointCost = pointCost; self.shardCost = shardCost
    }

    /// Per-point and per-group estimates of a grid.
    private struct Costs {
        var point: [Double] = []
        var group: [RunKey] = []
        var reference: [RunKey: Double] = [:]

        init(_ config: ExperimentConfig, grid: [GridPoint]) {
            var shapes: [String: CostModel.Shape] = [:]
            for m in config.models { shapes[m.id] = CostModel.Shape.of(m) }
            for p in grid {
                let shape = shapes[p.model.id] ?? .unknown
                let g = ShardPlan.groupKey(p)
                point.append(CostModel.cost(p, shape: shape))
                group.append(g)
                if reference[g] == nil { reference[g] = CostModel.referenceCost(p, shape: shape) }
            }
        }

        func shardCosts(_ shardOf: [Int], shards: Int) -> [Double] {
            var total = [Double](repeating: 0, count: shards)
            var seen = [Set<RunKey>](repeating: [], count: shards)
            for (i, s) in shardOf.enumerated() where s < shards {
                total[s] += point[i]
                if seen[s].insert(group[i]).inserted { total[s] += reference[group[i]]! }
            }
            return total
        }
    }

    /// The (model, task) a point's full-cache reference belongs to (as SweepRunner groups them).
    static func groupKey(_ p: GridPoint) -> RunKey { p.runKey.reference }
}

// MARK: - Plan files

extension ShardPlan {
    /// The plan as a tab-separated file: a commented header (version, config_hash, N, each shard's
    /// estimate), then one line per grid point: shard, grid index, estimated cost, label.
    public func text(_ config: ExperimentConfig) -> String {
        var lines = ["# kvlab shard plan v\(Self.fileVersion)", "# config_hash \(configHash)", "# shards \(count)",
                     "# estimated cost: FLOP-equivalents (docs/cluster.md); max/min \(String(format: "%.3f", imbalance))"]
        for s in 0..<count {
            lines.append("# shard \(s): \(indices(of: s).count) runs, \(String(format: "%.4e", shardCost[s]))")
        }
        lines.append("shard\tindex\tcost\tpoint")
        for p in config.grid {
            lines.append("\(shardOf[p.index - 1])\t\(p.index)\t\(String(format: "%.4e", pointCost[p.index - 1]))\t\(Self.describe(p))")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// "passkey ctx 1024 x10 kvlab-retrieval snapkv(...)": one grid point in a line.
    public static func describe(_ p: GridPoint) -> String {
        "\(p.task.kind.rawValue) ctx \(p.task.context) x\(p.task.samples) \(p.model.id) \(p.policy.label)"
    }

    /// Reads a plan file written by `text(_:)` for `config`; refuses one of another config, of
    /// another format version, or that does not assign every grid point to exactly one shard.
    public static func read(_ path: String, config: ExperimentConfig) throws -> ShardPlan {
        func bad(_ why: String) -> ClusterError { .badPlan(file: path, reason: why) }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw bad("cannot read it")
        }
        var version: Int?, hash: String?, count: Int?
        let grid = config.grid
        var shardOf = [Int?](repeating: nil, count: grid.count)
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            if line.isEmpty || line.hasPrefix("shard\t") { continue }
            if line.hasPrefix("# kvlab shard plan v") { version = Int(line.dropFirst("# kvlab shard plan v".count)); continue }
            if line.hasPrefix("# config_hash ") { hash = String(line.dropFirst("# config_hash ".count)); continue }
            if line.hasPrefix("# shards ") { count = Int(line.dropFirst("# shards ".count)); continue }
            if line.hasPrefix("#") { continue }
            let f = line.split(separator: "\t", maxSplits: 3).map(String.init)
            guard f.count >= 2, let s = Int(f[0]), let i = Int(f[1]) else { throw bad("line \(n + 1): expected 'shard<TAB>index<TAB>...'") }
            guard let count, (0..<count).contains(s) else { throw bad("line \(n + 1): shard \(s) outside 0..<\(count ?? 0) (or '# shards' missing above)") }
            guard (1...max(grid.count, 1)).contains(i), !grid.isEmpty else { throw bad("line \(n + 1): grid index \(i) outside 1...\(grid.count)") }
            guard shardOf[i - 1] == nil else { throw bad("line \(n + 1): grid index \(i) assigned twice") }
            shardOf[i - 1] = s
        }
        guard version == fileVersion else { throw bad("not a kvlab shard plan of version \(fileVersion) (first line '# kvlab shard plan v\(fileVersion)')") }
        guard hash == config.gridHash else {
            throw bad("made for another config (config_hash \(hash ?? "missing")); '\(config.file)' has config_hash \(config.gridHash)")
        }
        guard let count else { throw bad("'# shards N' line missing") }
        if let missing = shardOf.firstIndex(where: { $0 == nil }) { throw bad("grid index \(missing + 1) is not assigned to a shard") }
        return ShardPlan(config, grid: grid, count: count, shardOf: shardOf.map { $0! })
    }
}
