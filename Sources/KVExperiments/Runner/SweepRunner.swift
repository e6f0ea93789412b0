import Foundation
import KVCache
import KVModel
import KVPolicies
import KVTensor

/// How a sweep runs: resume/force, sharding, progress.
public struct RunOptions: Sendable {
    public var force = false
    /// (i, N): run shard i of N (a cost-balanced slice, `ShardPlan`) into its own file.
    public var shard: (index: Int, count: Int)? = nil
    /// The plan the shard follows (`kvlab run --plan`); nil: `ShardPlan` computed from the config.
    public var plan: ShardPlan? = nil
    public var output: String? = nil
    public var threads: Int? = nil
    /// Progress lines with ETA (on for a terminal).
    public var progress = true
    public init() {}
}

/// What a sweep did.
public struct SweepSummary: Sendable {
    public var output: String
    public var planned = 0
    public var skipped = 0
    public var ran = 0
    public var failed = 0
    public var wallSeconds = 0.0
    /// Seconds spent evaluating (model forwards, metrics) vs committing results and bookkeeping.
    public var evaluationSeconds = 0.0
    public var commitSeconds = 0.0
    public var overheadFraction: Double { wallSeconds > 0 ? max(wallSeconds - evaluationSeconds, 0) / wallSeconds : 0 }
}

/// Runs the grid of a config: for each (model, task) the full-cache reference once per sample,
/// then every policy on the same samples; each finished run is committed atomically.
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
        if let t = options.threads ?? config.threads { BLAS.setThreads(t) }
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
            let m = try entry.source.load()
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

        var references: (key: RunKey, samples: [TaskSample], outcomes: [SampleOutcome], seconds: Double)?
        var textSources: [String: String] = [:]
        var evalSeconds = 0.0
        for (done, point) in todo.enumerated() {
            if store.isFinished(index: point.index, key: point.key) { summary.skipped += 1; continue }
            let t0 = DispatchTime.now().uptimeNanoseconds
            var record: RunRecord
            do {
                let (m, codec, style) = try model(point.model)
                let refKey = point.runKey.reference
                if references?.key != refKey {
                    references = nil
                    let r0 = DispatchTime.now().uptimeNanoseconds
                    let samples = try TaskFactory.samples(point.task, codec: codec, vocabularySize: m.config.vocabSize,
                                                          options: TaskOptions(style: style),
                                                          modelName: loaded?.codecError.map { "\(point.model.id) (its tokenizer could not be read: \($0))" } ?? point.model.id)
                    let outcomes = samples.map { s in
                        evaluate(m, policy: FullCachePolicy(), sample: s, task: point.task, reference: true)
                    }
                    references = (refKey, samples, outcomes, Double(DispatchTime.now().uptimeNanoseconds - r0) / 1e9)
                }
                var source = ""
                if let file = point.task.textFile, point.task.kind != .mqar {
                    if textSources[file] == nil { textSources[file] = try RunFractions.textSource(file) }
                    source = textSources[file]!
                }
                record = try runPoint(point, model: m, codec: codec, samples: references!.samples, refs: references!.outcomes,
                                      referenceSeconds: references!.seconds, textSource: source)
            } catch {
                record = RunRecord(index: point.index, key: point.key, modelID: point.model.id, taskKind: point.task.kind.rawValue,
                                   context: point.task.context, seed: Int(point.task.seed), policyKind: point.policy.kind,
                                   policyFamily: point.policy.family, policyLabel: point.policy.label,
                                   policyParams: point.policy.parametersJSON, status: "error: \(error.localizedDescription)")
                record.info = RunFractions.info(point, textSource: "")
                summary.failed += 1
            }
            let t1 = DispatchTime.now().uptimeNanoseconds
            evalSeconds += Double(t1 - t0) / 1e9
            try store.commit(record)
            summary.commitSeconds += Double(DispatchTime.now().uptimeNanoseconds - t1) / 1e9
            summary.ran += 1
            if options.progress {
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                let left = todo.count - done - 1
                let eta = summary.ran > 0 ? elapsed / Double(done + 1) * Double(left) : 0
                let score = record.scalar("score").map { String(format: " score %.3f", $0) } ?? ""
                log(String(format: "[%d/%d] %@ %@ ctx %d: %@%@  (eta %.0fs)", done + 1, todo.count, point.task.kind.rawValue,
                           point.model.id, point.task.context, point.policy.label, record.status == "ok" ? score : " " + record.status, eta))
            }
        }
        summary.evaluationSeconds = evalSeconds
        summary.wallSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return summary
    }

    func evaluate(_ m: LlamaModel, policy: CachePolicy, sample: TaskSample, task: TaskSpec, reference: Bool) -> SampleOutcome {
        let cache = m.makeCache(policy: policy, initialCapacity: sample.context.count + sample.suffix.count + sample.maxNewTokens + 1)
        let probe = task.kind == .fidelity ? RecordingProbe(shape: cache.shape, keepProbabilities: reference) : nil
        var eos = Set(m.config.eosTokenIds)
        if task.kind == .mqar || task.kind == .fidelity { eos = [] }
        return SampleEvaluator.run(model: m, cache: cache, sample: sample, task: task, probe: probe, eos: eos)
    }
}

/// KVLab's identity for provenance.
public enum KVLabInfo { public static let version = "0.1.0" }
