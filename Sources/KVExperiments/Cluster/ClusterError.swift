// Errors of sharded sweeps on a cluster: shard plans, shard sets, Slurm scripts and submission.
import Foundation

/// Recoverable errors of `kvlab slurm`, `kvlab status` and the completeness check of `kvlab merge`.
/// Each names the file or option at fault and what was expected; none leaves a file changed.
public enum ClusterError: LocalizedError, Equatable, Sendable {
    /// N < 1, or more shards than grid points (a shard would have nothing to run).
    case badShards(config: String, shards: Int, points: Int)
    /// A shard plan file that cannot be used for this config.
    case badPlan(file: String, reason: String)
    /// A plan file of another plan (other config or N) is in the way.
    case planExists(file: String, reason: String)
    /// Merge inputs of different shard counts.
    case shardCountMismatch(file: String, shard: String, otherFile: String, otherShard: String)
    /// Shards of the set absent from the merge inputs.
    case missingShards(count: Int, missing: [Int], expected: [String])
    /// Grid points no input holds (per shard: how many and which, first few).
    case incomplete(missing: Int, of: Int, detail: [String])
    /// A merge would replace an output holding runs the inputs lack.
    case updateWouldLoseRuns(file: String, reason: String)
    /// A command-line value of the wrong form.
    case badOption(option: String, value: String, expected: String)
    /// A partition the cluster does not have.
    case unknownPartition(name: String, available: [String])
    /// A Slurm command is not installed here.
    case toolMissing(tool: String, hint: String)
    /// sbatch (or another Slurm command) failed.
    case commandFailed(command: String, status: Int32, output: String)

    public var errorDescription: String? {
        switch self {
        case let .badShards(config, shards, points):
            return shards < 1 ? "--shards \(shards): expected at least 1"
                : "--shards \(shards): '\(config)' has only \(points) grid points, so \(shards - points) shards would have nothing to run; use --shards \(points) or fewer"
        case let .badPlan(file, reason): return "shard plan '\(file)': \(reason)"
        case let .planExists(file, reason):
            return "'\(file)' already holds \(reason); nothing was written. Remove that folder (after its jobs are done) or pass --force to replace it"
        case let .shardCountMismatch(file, shard, other, otherShard):
            return "'\(file)' is shard \(shard) but '\(other)' is shard \(otherShard): merge the shards of one --shards N together"
        case let .missingShards(count, missing, expected):
            let list = zip(missing, expected).map { "\($0)/\(count) ('\($1)')" }.joined(separator: ", ")
            return "missing shard\(missing.count == 1 ? "" : "s") \(list) of \(count): pass every shard file (or --partial to merge what is there)"
        case let .incomplete(missing, total, detail):
            return "\(missing) of \(total) grid points are in no input (failed or unfinished array tasks; `kvlab status` shows them, " +
                "resubmitting resumes them):\n  " + detail.joined(separator: "\n  ") + "\npass --partial to merge what is there"
        case let .updateWouldLoseRuns(file, reason): return "'\(file)' was left as it is: \(reason)"
        case let .badOption(option, value, expected): return "\(option) '\(value)': expected \(expected)"
        case let .unknownPartition(name, available):
            return "--partition '\(name)': this cluster has no such partition (sinfo lists: \(available.joined(separator: ", ")))"
        case let .toolMissing(tool, hint): return "'\(tool)' not found in PATH: \(hint)"
        case let .commandFailed(command, status, output):
            return "`\(command)` failed (exit \(status)): \(output.trimmingCharacters(in: .whitespacesAndNewlines))"
        }
    }
}
