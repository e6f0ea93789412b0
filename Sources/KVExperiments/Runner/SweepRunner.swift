import Foundation
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor
import KVTokenizer

/// How a sweep runs: resume/force, sharding, progress.
public struct RunOptions: Sendable {
    public var force = false
    /// (i, N): run shard i of N (a cost-balanced slice, `ShardPlan`) into its own file.
    public var shard: (index: Int, count: Int)? = nil
    /// The plan the shard follows (`kvlab run --plan`); nil: `ShardPlan` computed from the config.
    public var plan: ShardPlan? = nil
    public var output: String? = nil
    public var threads: Int? = nil
    /// Samples evaluated concurrently (`kvlab run --jobs`), each on its own caches with BLAS and
    /// attention single-threaded; results equal a serial run's.
    public var jobs = 1
    /// Compute each sample's dense prefill once and replay it into every policy that
    /// `sharesDensePrefill` (`--no-shared-prefill` turns it off; results are identical either way).
    public var sharedPrefill = true
    /// Progress lines with ETA (on for a terminal).
    public var progress = true
    /// Runs committed with an error status are retried by a rerun unless this is set.
    public var skipFailed = false
    public init() {}
}

/// What a sweep did.
public struct SweepSummary: Sendable {
    public var output: String
    public var planned = 0
    public var skipped = 0
    public var ran = 0
    /// Runs of this invocation that ended with an error status.
    public var failed = 0
    /// Runs that had failed before and ran again (counted in `ran` too).
    public var retried = 0
    /// Runs that had failed before and were skipped (`skipFailed`); counted in `skipped` too.
    public var skippedFailed = 0
    /// Whether every run this invocation is responsible for is in the file with status "ok".
    public var allSucceeded: Bool { failed == 0 && skippedFailed == 0 }
    public var wallSeconds = 0.0
    /// Seconds spent evaluating (model forwards, metrics) vs committing results and bookkeeping.
    public var evaluationSeconds = 0.0
    public var commitSeconds = 0.0
    public var overheadFraction: Double { wallSeconds > 0 ? max(wallSeconds - evaluationSeconds, 0) / wallSeconds : 0 }
}

/// Runs the grid of a config: for each (model, task), every sample through the full-cache reference
/// (its dense prefill recorded once) and then through every policy (replaying that prefill where the
/// policy shares it); each finished run is committed atomically (SweepRunner+Group.swift).
public final class SweepRunner {
    public let config: ExperimentConfig
    public let options: RunOptions
    public static let schemaVersion = 1

    public init(config: ExperimentConfig, options: RunOptions) {
        self.config = config
        self.options = options
    }

    /// The grid points this invocation is responsible for (the shard's slice).
    public var points: [GridPoint] {
        let all = config.grid
        guard let s = options.shard else { return all }
        let plan = options.plan ?? ShardPlan.plan(config, grid: all, shards: s.count)
        return all.filter { plan.shardOf[$0.index - 1] == s.index }
    }

    public var outputPath: String {
        if let o = options.output { return o }
        guard let s = options.shard else { return config.output }
        let base = config.output.hasSuffix(".h5") ? String(config.output.dropLast(3)) : config.output
        return "\(base).shard\(s.index)of\(s.count).h5"
    }

    public func run(log: (String) -> Void) throws -> SweepSummary {
        let start = DispatchTime.now().uptimeNanoseconds
        try Preflight.check(config)   // everything a run would reject, before any work
        if let t = options.threads ?? config.threads { BLAS.setThreads(t) }
        if jobs > 1 { BLAS.setThreads(1) }
        var summary = SweepSummary(output: outputPath)
        let todo = points
        summary.planned = todo.count
        let dir = URL(fileURLWithPath: outputPath).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: dir.isEmpty ? "." : dir, withIntermediateDirectories: true)

        // Models are loaded lazily, one at a time, in grid order.
        // A tokenizer that cannot be read fails only the text tasks (with its reason), not the model's others.
        var loaded: (id: String, model: LlamaModel, codec: TextCodec?, style: PromptStyle, codecError: String?)?
        var records: [ModelRecord] = []
        func model(_ entry: ModelEntry) throws -> (LlamaModel, TextCodec?, PromptStyle) {
            if let l = loaded, l.id == entry.id { return (l.model, l.codec, l.style) }
            loaded = nil
            let m = try entry.source.load(weights: entry.weights)
            m.kvDType = entry.kvDType          // every cache of this entry's runs, the full-cache reference included
            var codec: TextCodec? = nil, codecError: String? = nil
            var style = PromptStyle.standard
            if let path = entry.source.path {
                do { (codec, style) = try TokenizerCodec.textSetup(model: path) } catch { codecError = error.localizedDescription }
            }
            loaded = (entry.id, m, codec, style, codecError)
            return (m, codec, style)
        }
        let provenance = Provenance(kvlabVersion: KVLabInfo.version, gitCommit: currentGitCommit(),
                                    created: ISO8601DateFormatter().string(from: Date()),
                                    host: ProcessInfo.processInfo.hostName, configText: config.text,
                                    configHash: config.gridHash, schemaVersion: Self.schemaVersion,
                                    shard: options.shard.map { "\($0.index)/\($0.count)" } ?? "")
        // Model identities go in the file header: hash every model once up front (cheap next to a sweep).
        for entry in config.models where todo.contains(where: { $0.model.id == entry.id }) {
            let (m, _, _) = try model(entry)
            records.append(try ModelIdentity.record(entry, model: m))
        }
        let store = try ResultsStore.open(path: outputPath, provenance: provenance, models: records, force: options.force)
        defer { store.close() }
        for w in config.warnings { log("warning: \(w)") }

        var textSources: [String: String] = [:]
        var evalSeconds = 0.0, done = 0
        for group in Self.groups(todo) {
            // Unfinished runs, and runs that failed before (retried unless `skipFailed`).
            var pending: [GridPoint] = []
            for point in group {
                if store.isFinished(index: point.index, key: point.key) {
                    if !store.isFailed(index: point.index) || options.skipFailed {
                        summary.skipped += 1
                        if store.isFailed(index: point.index) { summary.skippedFailed += 1 }
                        done += 1
                        continue
                    }
                    summary.retried += 1
                }
                pending.append(point)
            }
            guard let first = pending.first else { continue }
            let t0 = DispatchTime.now().uptimeNanoseconds
            var records: [RunRecord]
            do {
                // Bounded tokenizer regexes: one that backtracks without end fails the group's runs, clearly
                // (samples and scores built from cut-short encodes are never recorded).
                records = try TokenizerWorkLimit.check {
                    let (m, codec, style) = try model(first.model)
                    let samples = try TaskFactory.samples(first.task, codec: codec, vocabularySize: m.config.vocabSize,
                                                          options: try Self.taskOptions(first.task, style: style, codec: codec),
                                                          modelName: loaded?.codecError.map { "\(first.model.id) (its tokenizer could not be read: \($0))" } ?? first.model.id)
                    var source = ""
                    if let file = first.task.textFile, first.task.kind != .mqar {
                        if textSources[file] == nil { textSources[file] = try RunFractions.textSource(file) }
                        source = textSources[file]!
                    }
                    let stop = StopRule(eos: Set(m.config.eosTokenIds), strings: first.task.stop, codec: codec)
                    let vocabulary = LazyVocabulary { TokenVocabulary.of(codec: codec, size: m.config.vocabSize) }
                    let outcomes = evaluateGroup(pending, model: m, samples: samples, stop: stop, vocabulary: vocabulary.get) { line in
                        if options.progress { log(line) }
                    }
                    return zip(pending, outcomes).map { point, outcome in
                        switch outcome {
                        case .success(let results):
                            let record = aggregate(point, model: m.config, results: results, textSource: source)
                            // The last line of defence against "ok, score nan" (FiniteMetrics.swift).
                            do { try FiniteMetrics.check(record) } catch { return errorRecord(point, error) }
                            return record
                        case .failure(let error): return errorRecord(point, error)
                        }
                    }
                }
            } catch {
                records = pending.map { errorRecord($0, error) }
            }
            evalSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            for (point, record) in zip(pending, records) {
                let t1 = DispatchTime.now().uptimeNanoseconds
                try store.commit(record)
                summary.commitSeconds += Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
                summary.ran += 1
                if record.status != "ok" { summary.failed += 1 }
                done += 1
                if options.progress {
                    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                    let left = todo.count - done
                    let eta = summary.ran > 0 ? elapsed / Double(done) * Double(left) : 0
                    let score = record.scalar("score").map { String(format: " score %.3f", $0) } ?? ""
                    log(String(format: "[%d/%d] %@ %@ ctx %d: %@%@  (eta %.0fs)", done, todo.count, point.task.kind.rawValue,
                               point.model.id, point.task.context, point.policy.label, record.status == "ok" ? score : " " + record.status, eta))
                }
            }
        }
        summary.evaluationSeconds = evalSeconds
        summary.wallSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return summary
    }

    /// The grid points in runs of the same (model, task): consecutive in grid order (model-major,
    /// then task, then policy), they share their samples and the full-cache reference.
    static func groups(_ points: [GridPoint]) -> [[GridPoint]] {
        var out: [[GridPoint]] = []
        var lastKey: RunKey?
        for p in points {
            let key = p.runKey.reference
            if key == lastKey { out[out.count - 1].append(p) } else { out.append([p]); lastKey = key }
        }
        return out
    }

    /// The record of a grid point that could not run.
    func errorRecord(_ point: GridPoint, _ error: Error) -> RunRecord {
        var record = RunRecord(index: point.index, key: point.key, modelID: point.model.id, taskKind: point.task.kind.rawValue,
                               context: point.task.context, seed: Int(point.task.seed), policyKind: point.policy.kind,
                               policyFamily: point.policy.family, policyLabel: point.policy.label,
                               policyParams: point.policy.parametersJSON, status: "error: \(error.localizedDescription)")
        record.info = RunFractions.info(point, textSource: "")
        return record
    }
}

/// KVLab's identity for provenance.
public enum KVLabInfo { public static let version = "0.1.0" }
