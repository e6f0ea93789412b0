import ArgumentParser
import Foundation
import KVExperiments

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an experiment config: every model x task x policy point, saved to one HDF5 file.",
        discussion: """
        Each finished run is committed atomically: killing the sweep loses only the run in progress, \
        and rerunning the same config skips finished runs and retries failed ones (--skip-failed: \
        skip them too). A different config aimed at the same file is refused unless --force (the old \
        file is kept as a .bak). Exit status: 0 when every run is in the file with status ok, 2 when \
        any failed (or was skipped as failed), 1 on an error that stopped the sweep. The schema is in \
        docs/results-schema.md.
        """)

    @Argument(help: "The YAML config (see docs/config.md and experiments/).")
    var config: String
    @Flag(name: .customLong("dry-run"), help: "Print the grid and its size, run nothing.")
    var dryRun = false
    @Flag(help: "Start a new results file even if the existing one came from another config.")
    var force = false
    @Option(help: "Run shard i of N (a deterministic, cost-balanced slice of the grid) into its own file (merge with `kvlab merge`).")
    var shard: String?
    @Option(help: "With --shard: the plan file that says which points shard i runs (written by `kvlab slurm`).")
    var plan: String?
    @Option(help: "Results file (default: the config's output; shards add .shardIofN).")
    var output: String?
    @Option(help: "BLAS and attention threads (default: the config's, else all cores).")
    var threads: Int?
    @Option(help: "Samples evaluated at once, each on its own caches with BLAS single-threaded (results equal a serial run's; docs/benchmarks/sweep.md).")
    var jobs: Int = 1
    @Flag(name: .customLong("no-shared-prefill"), help: "Run every policy's own prefill instead of replaying each sample's dense prefill (identical results; for checking that).")
    var noSharedPrefill = false
    @Flag(help: "No progress lines (the default when stderr is not a terminal, e.g. in CI).")
    var quiet = false
    @Flag(help: "Progress lines even when stderr is not a terminal.")
    var progress = false
    @Flag(name: .customLong("skip-failed"), help: "Do not retry runs that failed in an earlier invocation.")
    var skipFailed = false

    func run() throws {
        let cfg = try ExperimentConfig.load(config)
        var opts = RunOptions()
        opts.force = force
        opts.output = output
        opts.threads = threads
        guard jobs >= 1 else { throw ValidationError("--jobs: expected at least 1, got \(jobs)") }
        opts.jobs = jobs
        opts.sharedPrefill = !noSharedPrefill
        opts.progress = !quiet && (progress || isatty(STDERR_FILENO) != 0)
        opts.skipFailed = skipFailed
        if let s = shard {
            let parts = s.split(separator: "/").compactMap { Int($0) }
            guard parts.count == 2, parts[1] > 0, parts[0] >= 0, parts[0] < parts[1] else {
                throw ValidationError("--shard: expected i/N with 0 <= i < N, got '\(s)'")
            }
            opts.shard = (parts[0], parts[1])
            guard parts[1] <= cfg.grid.count else { throw ClusterError.badShards(config: config, shards: parts[1], points: cfg.grid.count) }
            if let plan {
                let p = try ShardPlan.read(plan, config: cfg)
                guard p.count == parts[1] else { throw ValidationError("--plan '\(plan)' has \(p.count) shards, --shard says \(parts[1])") }
                opts.plan = p
            }
        } else if plan != nil {
            throw ValidationError("--plan needs --shard i/N")
        }
        let runner = SweepRunner(config: cfg, options: opts)
        if dryRun {
            try Preflight.check(cfg)
            print("config \(config): \(cfg.models.count) models x \(cfg.tasks.count) tasks x \(cfg.policies.count) policies = \(cfg.grid.count) runs; this invocation: \(runner.points.count)")
            for p in runner.points {
                print(String(format: "%6d  %@  %@ ctx %d x%d  %@", p.index, p.model.id, p.task.kind.rawValue, p.task.context,
                             p.task.samples, p.policy.label))
            }
            print("output: \(runner.outputPath)")
            return
        }
        note("running \(runner.points.count) of \(cfg.grid.count) runs into \(runner.outputPath)")
        let s = try runner.run(log: note)
        note(String(format: "done: %d ran (%d retried), %d skipped (finished before), %d failed; %.1f s, harness overhead %.1f%% (commits %.2f s)",
                    s.ran, s.retried, s.skipped, s.failed, s.wallSeconds, s.overheadFraction * 100, s.commitSeconds))
        let file = try ResultsFile.read(s.output)
        print(try ResultsReport.table(file))
        print("results: \(s.output)")
        if !s.allSucceeded {
            let skipped = s.skippedFailed > 0 ? ", \(s.skippedFailed) failed earlier and skipped (--skip-failed)" : ""
            note("FAILED: \(s.failed) runs failed\(skipped); their status column says why. Rerun to retry them.")
            throw ExitCode(2)
        }
    }
}

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate", abstract: "Check a config: schema, values, policies; print the grid size.",
        discussion: """
        Also checks everything `kvlab run` would otherwise reject later: each model folder (config.json, \
        tensor names and shapes; no weights are read), tokenizers of text tasks, one generated sample \
        per task point and model, policies against each model's shape, resource limits (samples x \
        context x layers, memory; see `limits:` in docs/config.md) and the output path. Weights are read \
        (and scanned for NaN and infinity, which `run` refuses before its first run) only with --load-weights.
        """)
    @Argument(help: "The YAML config.") var config: String
    @Flag(name: .customLong("load-weights"), help: "Also load every model's weights (scanning them for NaN and infinity), as run does first.")
    var loadWeights = false
    func run() throws {
        let cfg = try ExperimentConfig.load(config)
        try Preflight.check(cfg)
        if loadWeights {
            for m in cfg.models { _ = try m.source.load() }
        }
        for w in cfg.warnings { note("warning: \(w)") }
        print("\(config): ok: \(cfg.models.count) models, \(cfg.tasks.count) task points, \(cfg.policies.count) policy points, \(cfg.grid.count) runs -> \(cfg.output)")
    }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "report", abstract: "Print a results file's summary table.")
    @Argument(help: "A KVLab results file (.h5).") var file: String
    @Option(help: "Sort by this column.") var sort: String?
    @Flag(help: "Sort descending.") var descending = false
    @Option(help: "Columns to show, comma-separated (default: the main figures).") var columns: String?
    @Flag(help: "CSV instead of an aligned table.") var csv = false
    func run() throws {
        let f = try ResultsFile.read(file)
        let cols = columns.map { $0.split(separator: ",").map(String.init) }
        let missing = ResultsReport.missingColumns(f, columns: cols, sortBy: sort)
        if !missing.isEmpty {
            note("\(file) has no column \(missing.joined(separator: ", ")) (shown blank); its columns: \(ResultsReport.columns(f).joined(separator: ", "))")
        }
        if csv {
            print(try ResultsReport.csv(f, columns: cols, sortBy: sort, descending: descending), terminator: "")
        } else {
            print(try ResultsReport.table(f, columns: cols, sortBy: sort, descending: descending))
        }
    }
}

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "merge", abstract: "Merge shard files of one config into one results file.")
    @Argument(help: "The merged output file.") var output: String
    @Argument(help: "Shard files.") var inputs: [String]
    @Flag(help: "Overwrite an existing output.") var force = false
    @Flag(help: "Replace an existing output of the same config only if every run in it is in the inputs.") var update = false
    @Flag(help: "Merge what is there: skip the check that every shard and every grid point is present.") var partial = false
    @Option(help: "The shard plan (names the shard of a missing point; default: computed from the config).") var plan: String?
    func run() throws {
        if !partial { for line in try MergeCheck.check(inputs, planFile: plan) { note("note: \(line)") } }
        let n = try ResultsMerge.merge(inputs, into: output, force: force, update: update)
        print("merged \(inputs.count) files, \(n) runs -> \(output)")
    }
}
