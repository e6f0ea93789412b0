// `kvlab status`: which grid points of a sharded sweep are done, running or missing, read from
// the shard files alone (their runs, the config text they carry, and their writers' locks).
import Foundation

/// The state of one shard set (the N shard files of one sweep).
public struct ShardSurvey {
    public struct Shard {
        public var index: Int
        public var path: String
        public var exists: Bool
        /// Committed runs: grid index -> status ("ok" or "error: ...").
        public var runs: [Int: String] = [:]
        /// A `kvlab run` holds the file's lock (the shard is running now).
        public var running = false
        /// Why the file could not be read, if it could not.
        public var problem: String?
    }

    /// The sweep's output (the merged file); its shard files are named after it.
    public var output: String
    public var count: Int
    public var shards: [Shard]
    /// The config (from the caller, or parsed from the text stored in a shard file).
    public var config: ExperimentConfig?
    /// Why the grid is unknown when `config` is nil.
    public var configProblem: String?
    /// The plan the shards follow (a plan file, else computed from the config).
    public var plan: ShardPlan?

    /// Reads the shard files `files` (shard -> path; absent shards are named as `kvlab run` would).
    /// Without `config`, the config text stored in the first readable shard file is parsed.
    public static func read(output: String, count: Int, files: [Int: String], config: ExperimentConfig?,
                            plan: ShardPlan? = nil) -> ShardSurvey {
        var shards: [Shard] = []
        var text: (String, String)?
        for i in 0..<count {
            let path = files[i] ?? ShardFiles.path(output: output, shard: i, count: count)
            var s = Shard(index: i, path: path, exists: FileManager.default.fileExists(atPath: path))
            s.running = ShardFiles.isLocked(path)
            if s.exists {
                do {
                    let file = try ResultsIO.openResultsFile(path)
                    defer { try? file.close() }
                    let provenance = try ResultsIO.readRootProvenance(file)
                    if provenance.shard != "\(i)/\(count)" {
                        s.problem = "its shard attribute is '\(provenance.shard)', expected '\(i)/\(count)'"
                    }
                    if let config, provenance.configHash != config.gridHash {
                        s.problem = "holds another config (config_hash \(provenance.configHash), expected \(config.gridHash))"
                    } else {
                        if text == nil { text = (provenance.configText, path) }
                        for row in try ResultsIO.readRunRows(file) { s.runs[row.index] = row.status }
                    }
                } catch {
                    s.problem = error.localizedDescription
                }
            }
            shards.append(s)
        }
        var survey = ShardSurvey(output: output, count: count, shards: shards, config: config, plan: plan)
        if survey.config == nil {
            if let (yaml, path) = text {
                do { survey.config = try ExperimentConfig.parse(yaml, file: "\(path) (stored config)") } catch {
                    survey.configProblem = error.localizedDescription
                }
            } else {
                survey.configProblem = "no readable shard file holds the config"
            }
        }
        if survey.plan == nil, let c = survey.config {
            // The plan file `kvlab slurm` wrote, if it is this config's with this N; else the computed plan.
            let written = try? ShardPlan.read(ShardFiles.planPath(output: output), config: c)
            survey.plan = written?.count == count ? written : ShardPlan.plan(c, grid: c.grid, shards: count)
        }
        return survey
    }

    /// Grid indices committed in any shard (with their status).
    public var finished: [Int: String] {
        var all: [Int: String] = [:]
        for s in shards { all.merge(s.runs) { a, _ in a } }
        return all
    }

    /// Per shard, the grid point its running writer is on: its first planned point not committed.
    public var inProgress: [Int: Int] {
        guard let plan else { return [:] }
        var out: [Int: Int] = [:]
        let done = finished
        for s in shards where s.running {
            if let next = plan.indices(of: s.index).first(where: { done[$0] == nil }) { out[s.index] = next }
        }
        return out
    }

    /// Grid indices in no shard file, running ones excluded, in grid order.
    public var missing: [Int] {
        guard let config else { return [] }
        let done = finished, running = Set(inProgress.values)
        return config.grid.map(\.index).filter { done[$0] == nil && !running.contains($0) }
    }

    /// The status table: one line per shard, a total, and the missing points (first `listLimit`).
    public func report(listLimit: Int = 20) -> String {
        var lines: [String] = []
        let grid = config?.grid
        let hash = config.map { String($0.gridHash.prefix(12)) } ?? "?"
        lines.append("sweep \(output): \(grid.map { "\($0.count) grid points" } ?? "grid unknown"), \(count) shards, config_hash \(hash)")
        if let configProblem { lines.append("  (grid unknown: \(configProblem))") }
        let running = inProgress
        let width = max(shards.map { $0.path.count + ($0.exists ? 0 : 7) }.max() ?? 4, 4)
        func pad(_ s: String, _ w: Int) -> String { s.count >= w ? s : s + String(repeating: " ", count: w - s.count) }
        func num(_ s: String, _ w: Int) -> String { s.count >= w ? s : String(repeating: " ", count: w - s.count) + s }
        lines.append(pad("shard", 7) + pad("file", width + 2) + num("planned", 8) + num("done", 6) + num("failed", 8) +
                     num("missing", 9) + "  " + pad("state", 16) + num("est. cost", 10))
        var totals = (planned: 0, done: 0, failed: 0, missing: 0)
        for s in shards {
            let planned = plan?.indices(of: s.index) ?? []
            let failed = s.runs.values.filter { $0 != "ok" }.count
            let done = plan == nil ? s.runs.count : planned.filter { finished[$0] != nil }.count
            let open = plan == nil ? 0 : planned.count - done - (running[s.index] == nil ? 0 : 1)
            let state: String
            if let p = s.problem { state = "unreadable" ; lines.append("  shard \(s.index): \(p)") }
            else if let r = running[s.index] { state = "running #\(r)" }
            else if s.running { state = "running" }
            else if !s.exists { state = "not started" }
            else if plan != nil && open == 0 { state = "complete" }
            else { state = "stopped" }
            totals.planned += planned.count; totals.done += done; totals.failed += failed; totals.missing += open
            lines.append(pad("\(s.index)/\(count)", 7) + pad(s.exists ? s.path : s.path + " (none)", width + 2) +
                         num(plan == nil ? "?" : "\(planned.count)", 8) + num("\(done)", 6) + num("\(failed)", 8) +
                         num(plan == nil ? "?" : "\(open)", 9) + "  " + pad(state, 16) +
                         num(plan.map { CostModel.format($0.shardCost[s.index]) } ?? "?", 10))
        }
        lines.append(pad("total", 7 + width + 2) + num(plan == nil ? "?" : "\(totals.planned)", 8) + num("\(totals.done)", 6) +
                     num("\(totals.failed)", 8) + num(plan == nil ? "?" : "\(totals.missing)", 9) +
                     "  " + pad("\(running.count) running", 16))
        if let grid {
            let gone = missing
            if !gone.isEmpty {
                lines.append("missing (no shard file holds them, none running):")
                for i in gone.prefix(listLimit) {
                    lines.append("  #\(i)  shard \(plan.map { "\($0.shardOf[i - 1])" } ?? "?")  \(ShardPlan.describe(grid[i - 1]))")
                }
                if gone.count > listLimit { lines.append("  ... and \(gone.count - listLimit) more") }
            }
            for (s, i) in running.sorted(by: { $0.key < $1.key }) {
                lines.append("running: shard \(s) on #\(i) \(ShardPlan.describe(grid[i - 1]))")
            }
            let bad = shards.flatMap { s in s.runs.filter { $0.value != "ok" }.map { (s.index, $0.key, $0.value) } }.sorted { $0.1 < $1.1 }
            for (s, i, status) in bad.prefix(listLimit) {
                lines.append("failed: shard \(s) #\(i) \(ShardPlan.describe(grid[i - 1])): \(status)")
            }
        }
        return lines.joined(separator: "\n")
    }
}
