import ArgumentParser
import Foundation
import KVExperiments

struct SlurmCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slurm",
        abstract: "Write (and with --submit, submit) a Slurm job array that runs a config's shards, plus a merge job after it.",
        discussion: """
        Shards are balanced by estimated cost (docs/cluster.md). Writes <output>.slurm/: plan.tsv (which shard \
        runs which grid point), array.sbatch (task i runs `kvlab run CONFIG --shard i/N --plan plan.tsv`), \
        merge.sbatch (after every task ends: `kvlab status`, `kvlab merge --update`, `kvlab report`) and logs/. \
        A requeued or resubmitted task resumes its shard: finished runs are kept. Without --submit it prints the \
        sbatch command; --dry-run prints each shard's estimated cost and writes nothing.
        """)

    @Argument(help: "The YAML config (see docs/config.md).") var config: String
    @Option(help: "Number of shards (array tasks).") var shards: Int
    @Option(help: "Slurm partition (checked against sinfo where sinfo is installed).") var partition: String?
    @Option(help: "Time limit per task: minutes, HH:MM:SS or D-HH:MM:SS.") var time: String?
    @Option(name: .customLong("cpus-per-task"), help: "CPUs per task (also kvlab's --threads unless the config sets threads).")
    var cpusPerTask = 1
    @Option(help: "Memory per task, e.g. 8G.") var mem: String?
    @Option(help: "Slurm account.") var account: String?
    @Option(parsing: .unconditional, help: "More sbatch options for both jobs, e.g. --extra \"--qos=long --constraint=avx2\".")
    var extra: String?
    @Option(help: "The kvlab binary the jobs run (default: this one).") var kvlab: String?
    @Flag(help: "Submit with sbatch and print the job ids.") var submit = false
    @Flag(name: .customLong("dry-run"), help: "Print the plan (each shard's estimated cost, max/min) and write nothing.")
    var dryRun = false
    @Flag(help: "Replace a folder holding another plan (other N or config).") var force = false
    @Option(name: .customLong("seconds-per-tflop"),
            help: "Print estimated hours per shard too, at this many seconds per 10^12 FLOP-equivalents (measure it: docs/cluster.md).")
    var secondsPerTFLOP: Double?

    func run() throws {
        if let r = secondsPerTFLOP, !(r > 0) { throw ValidationError("--seconds-per-tflop: expected a positive number, got \(r)") }
        let cfg = try ExperimentConfig.load(config)
        let cwd = FileManager.default.currentDirectoryPath
        var o = SlurmOptions(shards: shards, kvlab: try kvlabPath(cwd: cwd), workingDirectory: cwd)
        o.partition = partition; o.time = time; o.cpusPerTask = cpusPerTask; o.mem = mem; o.account = account; o.extra = extra
        let job = try SlurmJob(config: cfg, configPath: config, options: o)
        print(planTable(job))
        if dryRun { return }
        if let partition {
            do {
                let available = try SlurmTools.partitions()
                try SlurmTools.checkPartition(partition, available: available)
                if available == nil { note("note: sinfo not found, --partition '\(partition)' not checked") }
            } catch let ClusterError.commandFailed(command, _, output) {
                note("note: --partition '\(partition)' not checked: `\(command)` failed: \(output.split(separator: "\n").last ?? "")")
            }
        }
        try job.write(force: force)
        print("wrote \(job.planFile), \(job.arrayScript) (array 0-\(shards - 1)), \(job.mergeScript); logs in \(job.logs)/")
        guard submit else {
            print("submit with:\n  \(job.submitCommand)\nfollow with:\n  \(o.kvlab) status \(config)")
            return
        }
        let ids = try SlurmTools.submit(job)
        print("submitted array job \(ids.array) (\(shards) tasks) and merge job \(ids.merge) (afterany:\(ids.array))")
        print("follow with:\n  \(o.kvlab) status \(config)\n  squeue -j \(ids.array),\(ids.merge)")
    }

    /// The plan: per shard, runs and estimated cost; max/min.
    func planTable(_ job: SlurmJob) -> String {
        let p = job.plan, total = p.shardCost.reduce(0, +)
        var lines = ["\(config): \(job.config.grid.count) grid points over \(p.count) shards, balanced by estimated cost (FLOP-equivalents, docs/cluster.md)",
                     "shard   runs   est. cost   share" + (secondsPerTFLOP == nil ? "" : "   est. hours")]
        func hours(_ c: Double) -> String { secondsPerTFLOP.map { String(format: "   %10.2f", c / 1e12 * $0 / 3600) } ?? "" }
        for s in 0..<p.count {
            lines.append(String(format: "%5d  %5d  ", s, p.indices(of: s).count) + pad(CostModel.format(p.shardCost[s]), 10) +
                         String(format: "  %5.1f%%", 100 * p.shardCost[s] / max(total, 1e-300)) + hours(p.shardCost[s]))
        }
        lines.append(String(format: "total  %5d  ", job.config.grid.count) + pad(CostModel.format(total), 10) +
                     String(format: "   max/min %.3f", p.imbalance) + (secondsPerTFLOP == nil ? "" : " " + hours(total) + " CPU hours in all"))
        // A run is never split: the largest one (with its reference) bounds the most expensive shard.
        let grid = job.config.grid
        if let big = grid.indices.max(by: { p.pointCost[$0] < p.pointCost[$1] }) {
            let bound = p.pointCost[big] + CostModel.referenceCost(grid[big], shape: CostModel.Shape.of(grid[big].model))
            let useful = max(Int((total / bound).rounded(.down)), 1)
            lines.append("largest run: #\(big + 1) \(ShardPlan.describe(grid[big])), \(CostModel.format(bound)) with its reference " +
                         String(format: "(%.0f%% of an even share); more than about %d shards cannot be balanced", 100 * bound * Double(p.count) / max(total, 1e-300), useful))
        }
        return lines.joined(separator: "\n")
    }

    func pad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(w - s.count, 0)) + s }

    /// --kvlab, else this executable (absolute).
    func kvlabPath(cwd: String) throws -> String {
        if let kvlab {
            let path = kvlab.hasPrefix("/") ? kvlab : (cwd as NSString).appendingPathComponent(kvlab)
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw ValidationError("--kvlab '\(kvlab)': not an executable file")
            }
            return path
        }
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return exe }
        let arg0 = CommandLine.arguments[0]
        return arg0.hasPrefix("/") ? arg0 : (cwd as NSString).appendingPathComponent(arg0)
    }
}

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Which grid points of a sharded sweep are done, running or missing, from its shard files alone.",
        discussion: """
        Given a config, reads its shard files (<output>.shard<i>of<N>.h5); given a folder, every shard set in it \
        (the grid comes from the config stored in the files). A shard is running when a `kvlab run` holds its \
        lock file; the point it is on is its first planned point not yet committed.
        """)

    @Argument(help: "A config (.yaml) or a results folder.") var target: String
    @Option(help: "Shard count to report on when no shard file exists yet (or several N exist).") var shards: Int?
    @Option(help: "The shard plan file (default: <output>.slurm/plan.tsv when it matches).") var plan: String?
    @Option(help: "Missing points listed at most.") var limit = 20

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory) else {
            throw ValidationError("'\(target)': no such config or folder")
        }
        if isDirectory.boolValue {
            let sets = try ShardFiles.find(in: target).filter { shards == nil || $0.count == shards }
            if sets.isEmpty { print("\(target): no shard files (<name>.shard<i>of<N>.h5)"); return }
            for set in sets {
                print(ShardSurvey.read(output: set.base + ".h5", count: set.count, files: set.files, config: nil).report(listLimit: limit))
            }
            return
        }
        let cfg = try ExperimentConfig.load(target)
        let planned = try plan.map { try ShardPlan.read($0, config: cfg) }
        var sets = try ShardFiles.find(output: cfg.output)
        if let n = shards ?? planned?.count { sets = sets.filter { $0.count == n }; if sets.isEmpty { sets = [(n, [:])] } }
        if sets.isEmpty {
            let whole = FileManager.default.fileExists(atPath: cfg.output)
                ? " (the unsharded output exists: `kvlab report \(cfg.output)`)" : ""
            print("\(target): no shard files of \(cfg.output) yet\(whole); pass --shards N to list the planned shards")
            return
        }
        for set in sets {
            let p = planned?.count == set.count ? planned : nil
            print(ShardSurvey.read(output: cfg.output, count: set.count, files: set.files, config: cfg, plan: p).report(listLimit: limit))
        }
    }
}
