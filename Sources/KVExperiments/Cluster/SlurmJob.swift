// `kvlab slurm`: an sbatch job array (one task per shard) and a dependent merge job for a config.
import Foundation

/// What `kvlab slurm` was asked for.
public struct SlurmOptions: Sendable {
    public var shards: Int
    public var partition: String?
    /// --time: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS.
    public var time: String?
    public var cpusPerTask = 1
    /// --mem: a number with an optional K/M/G/T suffix.
    public var mem: String?
    public var account: String?
    /// More sbatch options for both jobs, e.g. "--qos=long --constraint=avx2".
    public var extra: String?
    /// The kvlab binary the jobs run (absolute path).
    public var kvlab: String
    /// The jobs' working directory (absolute): the config's relative paths are resolved from it.
    public var workingDirectory: String

    public init(shards: Int, kvlab: String, workingDirectory: String) {
        self.shards = shards; self.kvlab = kvlab; self.workingDirectory = workingDirectory
    }

    /// Checks every value's form (before anything is written).
    public func validate() throws {
        func check(_ option: String, _ value: String?, _ pattern: String, _ expected: String) throws {
            guard let value else { return }
            guard value.range(of: pattern, options: .regularExpression) != nil else {
                throw ClusterError.badOption(option: option, value: value, expected: expected)
            }
        }
        try check("--time", time, #"^([0-9]+-)?[0-9]+(:[0-9]+){0,2}$"#, "minutes, HH:MM:SS or D-HH:MM:SS")
        try check("--mem", mem, #"^[0-9]+[KMGT]?$"#, "a size such as 4000M or 8G")
        try check("--partition", partition, #"^[A-Za-z0-9_.-]+$"#, "a partition name (letters, digits, _ . -)")
        try check("--account", account, #"^[A-Za-z0-9_.-]+$"#, "an account name (letters, digits, _ . -)")
        guard cpusPerTask >= 1 else { throw ClusterError.badOption(option: "--cpus-per-task", value: "\(cpusPerTask)", expected: "at least 1") }
        _ = try extraDirectives()
    }

    /// `extra` as one sbatch option per line: "--qos high --constraint=avx2" -> ["--qos high", "--constraint=avx2"].
    public func extraDirectives() throws -> [String] {
        guard let extra else { return [] }
        var out: [String] = []
        for token in extra.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) {
            guard !token.contains(where: { $0.isNewline || $0 == "'" || $0 == "\"" || $0 == "`" || $0 == "$" || $0 == ";" }) else {
                throw ClusterError.badOption(option: "--extra", value: extra, expected: "sbatch options without quotes, newlines, $, ` or ;")
            }
            if token.hasPrefix("-") { out.append(token) } else if let last = out.popLast() { out.append(last + " " + token) } else {
                throw ClusterError.badOption(option: "--extra", value: extra, expected: "sbatch options starting with '-', e.g. \"--qos=long\"")
            }
        }
        return out
    }
}

/// The files of one `kvlab slurm` invocation: the plan, the array script, the merge script.
public struct SlurmJob {
    public let config: ExperimentConfig
    public let configPath: String
    public let options: SlurmOptions
    public let plan: ShardPlan

    /// `<output minus .h5>.slurm/`: array.sbatch, merge.sbatch, plan.tsv, logs/.
    public var folder: String { ShardFiles.slurmFolder(output: config.output) }
    public var arrayScript: String { (folder as NSString).appendingPathComponent("array.sbatch") }
    public var mergeScript: String { (folder as NSString).appendingPathComponent("merge.sbatch") }
    public var planFile: String { ShardFiles.planPath(output: config.output) }
    public var logs: String { (folder as NSString).appendingPathComponent("logs") }
    public var shardFiles: [String] { (0..<plan.count).map { ShardFiles.path(output: config.output, shard: $0, count: plan.count) } }

    /// Validates the options and plans the shards (throws on N larger than the grid).
    public init(config: ExperimentConfig, configPath: String, options: SlurmOptions) throws {
        try options.validate()
        self.config = config; self.configPath = configPath; self.options = options
        self.plan = try ShardPlan.make(config, shards: options.shards)
    }

    /// An absolute path for a path relative to the jobs' working directory.
    func absolute(_ path: String) -> String {
        path.hasPrefix("/") ? path : (options.workingDirectory as NSString).appendingPathComponent(path)
    }

    func directives(name: String, output: String) throws -> [String] {
        var d = ["--job-name=\(name)", "--output=\(output)", "--open-mode=append", "--chdir=\(options.workingDirectory)"]
        if let p = options.partition { d.append("--partition=\(p)") }
        if let t = options.time { d.append("--time=\(t)") }
        if let m = options.mem { d.append("--mem=\(m)") }
        if let a = options.account { d.append("--account=\(a)") }
        return d + (try options.extraDirectives())
    }

    /// The array script: task i runs `kvlab run CONFIG --shard i/N --plan PLAN` under srun.
    public func arrayScriptText() throws -> String {
        let n = plan.count, c = options.cpusPerTask
        let d = try directives(name: "kvlab-\(config.name)", output: absolute(logs) + "/shard%a-%A.log")
            + ["--array=0-\(n - 1)", "--requeue", "--ntasks=1", "--cpus-per-task=\(c)"]
        // The config's own `threads:` wins; otherwise BLAS gets the CPUs Slurm gave the task.
        let threads = config.threads == nil ? " --threads \(c)" : ""
        return """
        #!/bin/bash
        # kvlab slurm: \(n) shards of \(configPath) (plan: \(planFile)). Generated; regenerate rather than edit.
        # A requeued or restarted task resumes its shard: finished runs are kept, only the run in progress is redone.
        \(d.map { "#SBATCH \($0)" }.joined(separator: "\n"))
        set -uo pipefail
        i=${SLURM_ARRAY_TASK_ID:?not an array task}
        echo "kvlab shard $i/\(n): job ${SLURM_ARRAY_JOB_ID}_$i on $(hostname), restart ${SLURM_RESTART_COUNT:-0}, start $(date +%s)"
        # srun makes kvlab a job step (scancel --signal reaches it); bash's `time` logs its CPU seconds.
        srun --ntasks=1 --cpus-per-task=\(c) bash -c 'TIMEFORMAT="kvlab cpu %U user %S sys %R wall"; time "$@"' kvlab \\
            \(q(options.kvlab)) run \(q(configPath)) --shard "$i/\(n)" --plan \(q(planFile))\(threads) --progress
        status=$?
        echo "kvlab shard $i/\(n): exit $status, end $(date +%s)"
        exit $status

        """
    }

    /// The merge script (submitted with --dependency=afterany on the array): status, merge, report.
    /// The merge refuses a missing shard or grid point, so the job fails naming them.
    public func mergeScriptText() throws -> String {
        let d = try directives(name: "kvlab-\(config.name)-merge", output: absolute(logs) + "/merge-%j.log")
            + ["--ntasks=1", "--cpus-per-task=1"]
        let inputs = shardFiles.map(q).joined(separator: " ")
        return """
        #!/bin/bash
        # kvlab slurm: merge of the \(plan.count) shards of \(configPath) into \(config.output). Generated; regenerate rather than edit.
        \(d.map { "#SBATCH \($0)" }.joined(separator: "\n"))
        set -euo pipefail
        echo "kvlab merge of \(configPath): job ${SLURM_JOB_ID:-?} on $(hostname), start $(date +%s)"
        \(q(options.kvlab)) status \(q(configPath)) --plan \(q(planFile))
        \(q(options.kvlab)) merge \(q(config.output)) \(inputs) --plan \(q(planFile)) --update
        \(q(options.kvlab)) report \(q(config.output))
        echo "kvlab merge: end $(date +%s)"

        """
    }

    /// Writes the plan, both scripts and the log folder. A folder holding a plan of another config
    /// or another N is refused unless `force` (its shard files would not match the new plan).
    public func write(force: Bool) throws {
        let fm = FileManager.default
        if !force, fm.fileExists(atPath: planFile) {
            do { let old = try ShardPlan.read(planFile, config: config)
                if old.count != plan.count { throw ClusterError.planExists(file: folder, reason: "a plan of \(old.count) shards (this one has \(plan.count))") }
            } catch let e as ClusterError {
                if case .planExists = e { throw e }
                throw ClusterError.planExists(file: folder, reason: "another plan (\(e.localizedDescription))")
            }
        }
        let array = try arrayScriptText(), merge = try mergeScriptText()
        try fm.createDirectory(atPath: logs, withIntermediateDirectories: true)
        for (path, text, mode) in [(planFile, plan.text(config), 0o644), (arrayScript, array, 0o755), (mergeScript, merge, 0o755)] {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
            try fm.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        }
    }

    /// The commands that submit both jobs (what `--submit` runs).
    public var submitCommand: String {
        "jid=$(sbatch --parsable \(q(arrayScript))) && sbatch --dependency=afterany:${jid%%;*} \(q(mergeScript))"
    }
}

/// Single-quotes a word for bash when it needs it.
func q(_ s: String) -> String {
    if !s.isEmpty, s.allSatisfy({ $0.isLetter || $0.isNumber || "/._-+=:,@%".contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}
