import Foundation
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor
import KVTokenizer

extension SweepRunner {
    /// Samples evaluated concurrently.
    var jobs: Int { max(1, options.jobs) }

    /// Evaluates one (model, task) group: every sample through the full-cache reference, then
    /// through each point's policy; per point, its per-sample results in sample order, or the error
    /// that stopped it (a policy that cannot be built for this model).
    ///
    /// Per sample, the reference runs first. When sharing is on and a point's policy
    /// `sharesDensePrefill`, the reference records its dense prefill of the context (the inputs each
    /// layer handed the cache, `PrefillRecording`) and that policy's cache replays it instead of
    /// running the model (`KVCache.replay`); a cross-layer sharing policy replays the layers below
    /// its first shared layer and runs the model from there (`PrefillResume`). The question and the
    /// decoding run per policy, all of a sample's runs in lockstep (`decodeLockstep`). The recording
    /// lives only while its sample is evaluated. With `jobs` > 1, samples are spread over
    /// that many workers (each sample on its own caches, BLAS and attention single-threaded);
    /// every number equals a serial run's, only timings differ.
    ///
    /// `vocabulary`: the model's vocabulary for policies that type tokens (NAtS), built on first use.
    func evaluateGroup(_ points: [GridPoint], model m: LlamaModel, samples: [TaskSample], stop: StopRule,
                       vocabulary: (() -> TokenVocabulary?)? = nil,
                       progress: (String) -> Void) -> [Result<[SampleResult], Error>] {
        let vocabulary: () -> TokenVocabulary? = vocabulary ?? { TokenVocabulary(size: m.config.vocabSize) }
        let task = points[0].task
        // Checked before any work: a policy that cannot be built for this model (bad parameters, a
        // calibration or score file that does not load or does not fit the model's shape, head
        // pooling that does not divide its KV heads) or a head ablation that does not fit fails its
        // point, not the group.
        var failures = [Error?](repeating: nil, count: points.count)
        var masks = [HeadMask?](repeating: nil, count: points.count)
        for (i, p) in points.enumerated() {
            do {
                _ = try p.policy.make(model: m.cacheShape, vocabulary: vocabulary)
                masks[i] = try p.task.ablation?.resolve(layers: m.config.layers, queryHeads: m.config.heads)
            } catch { failures[i] = error }
        }
        // A point whose numbers are the reference's: the full cache on the intact model. A task with
        // a head ablation runs the full policy too (the reference stays the intact model).
        let isReference = points.indices.map { points[$0].policy == .full && masks[$0] == nil }
        // Per point, how its prefill is taken from the reference's: whole, from a layer on, or not.
        // A head mask that applies in prefill (`ablate_phase: all`) changes it: that run prefills on its
        // own; a decode-only mask leaves the prefill the intact model's, bit for bit.
        let sharing: [Int?] = points.indices.map { i in
            let p = points[i].policy
            guard options.sharedPrefill, failures[i] == nil, !isReference[i], masks[i]?.phases != .all else { return nil }
            switch p.prefillSharing {
            case .whole: return m.config.layers
            case .none: return nil
            case .leadingLayers:
                guard let live = try? p.make() else { return nil }
                let l = m.makeCache(policy: live, initialCapacity: 1).denseLayerPrefix
                return l > 0 ? l : nil
            }
        }
        let hiddenLayers = Set(sharing.compactMap { $0 }.filter { $0 < m.config.layers })
        let table = ResultTable(points: points.count, samples: samples.count)
        for (i, f) in failures.enumerated() { if let f { table.fail(i, f) } }
        let threads = jobs > 1 ? 1 : nil

        // Runs decoded together: all of a sample's policies unless their caches would outgrow the
        // memory budget (each could hold the whole prompt and answer in Float32).
        let bytesPerRun = m.cacheShape.fullBytesPerToken * (task.context + 256)
        let wave = max(1, Self.lockstepCacheBytes / jobs / max(bytesPerRun, 1))

        func evaluateSample(_ si: Int) throws {
            let s = samples[si]
            let t0 = DispatchTime.now().uptimeNanoseconds
            let ref = makeRun(m, policy: FullCachePolicy(), sample: s, task: task, reference: true, stop: stop, threads: threads)
            // The reference's numbers are every point's yardstick: NaN or infinity there fails them all.
            try ref.prefill(sharing.contains { $0 != nil } ? .record(hiddenLayers: hiddenLayers) : .own)
            var reference: SampleOutcome?
            var pending = points.indices.filter { !table.failed($0) && !isReference[$0] }
            var first = true
            while first || !pending.isEmpty {
                let batch = Array(pending.prefix(first ? wave - 1 : wave))
                pending.removeFirst(batch.count)
                var runs: [(point: Int, run: SequenceRun)] = []
                for pi in batch {
                    let policy: CachePolicy
                    do { policy = try points[pi].policy.make(model: m.cacheShape, vocabulary: vocabulary) } catch { table.fail(pi, error); continue }
                    let run = makeRun(m, policy: policy, sample: s, task: task, reference: false, stop: stop, threads: threads,
                                      headMask: masks[pi])
                    do {
                        switch sharing[pi] {
                        case nil: try run.prefill(.own)
                        case m.config.layers?: try run.prefill(.replay(ref.sharedPrefill!))
                        case let layer?: try run.prefill(.resume(ref.sharedPrefill!, layer: layer))
                        }
                    } catch { table.fail(pi, error); continue }
                    runs.append((pi, run))
                }
                decodeLockstep(m, (first ? [ref] : []) + runs.map(\.run))
                if first {
                    if let e = ref.failure { throw e }
                    reference = ref.outcome; first = false
                }
                for (pi, run) in runs {
                    if let e = run.failure { table.fail(pi, e); continue }
                    table.set(pi, si, SampleResult(point: points[pi], sample: s, out: run.outcome, reference: reference!,
                                                   model: m.config, keepRetained: config.retentionMaps, seconds: run.seconds,
                                                   headMask: run.headMask))
                }
            }
            for (pi, point) in points.enumerated() where isReference[pi] && !table.failed(pi) {
                table.set(pi, si, SampleResult(point: point, sample: s, out: reference!, reference: reference!,
                                               model: m.config, keepRetained: config.retentionMaps, seconds: ref.seconds))
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            table.locked { n in
                progress(String(format: "  sample %d/%d of %@ ctx %d done (%.1fs)", n, samples.count, task.kind.rawValue, task.context, seconds))
            }
        }
        // A failed reference fails every point of the group; so does a tokenizer regex that hit its
        // work limit while a worker decoded generated text (each worker bounds its own searches).
        func evaluateSampleOrFail(_ si: Int) {
            do { try TokenizerWorkLimit.check { try evaluateSample(si) } } catch {
                for pi in points.indices { table.fail(pi, error) }
            }
        }

        if jobs > 1 && samples.count > 1 {
            let next = Counter()
            DispatchQueue.concurrentPerform(iterations: min(jobs, samples.count)) { _ in
                while let si = next.take(below: samples.count) { evaluateSampleOrFail(si) }
            }
        } else {
            for si in samples.indices { evaluateSampleOrFail(si) }
        }
        return table.results()
    }

    /// Bytes of caches one sample's lockstep decoding may hold at once (split over the jobs).
    static let lockstepCacheBytes = 4 << 30

    /// A run of one sample through a fresh cache managed by `policy`.
    func makeRun(_ m: LlamaModel, policy: CachePolicy, sample: TaskSample, task: TaskSpec, reference: Bool,
                 stop: StopRule, threads: Int? = nil, headMask: HeadMask? = nil) -> SequenceRun {
        let cache = m.makeCache(policy: policy, initialCapacity: sample.context.count + sample.suffix.count + sample.maxNewTokens + 1)
        if let threads { cache.threads = threads }
        let probe = task.kind == .fidelity ? RecordingProbe(shape: cache.shape, keepProbabilities: reference) : nil
        var stop = stop
        if task.kind == .mqar || task.kind == .fidelity { stop.eos = [] }
        return SequenceRun(model: m, cache: cache, sample: sample, task: task, probe: probe, stop: stop, headMask: headMask)
    }

    /// Decodes runs in lockstep until every one is over: each step feeds every unfinished run's
    /// next token through one `decodeBatch` (weights read once per tile of sequences, not once per
    /// sequence); each run is charged an equal share of the step's time. Each run's head mask applies
    /// to its own row only; a run whose numbers turn non-finite stops with its `failure`.
    func decodeLockstep(_ m: LlamaModel, _ runs: [SequenceRun]) {
        while true {
            var active: [(run: SequenceRun, token: Int)] = []
            for r in runs { if let t = r.nextToken() { active.append((r, t)) } }
            if active.isEmpty { return }
            var logits: [Result<[Float], NonFiniteError>] = []
            let t = clock {
                logits = m.decodeBatchChecked(active.map(\.token), positions: active.map(\.run.nextPosition),
                                              caches: active.map { $0.run.cache! }, headMasks: active.map(\.run.headMask))
            }
            for (i, a) in active.enumerated() {
                switch logits[i] {
                case .success(let row): a.run.accept(row, seconds: t / Double(active.count))
                case .failure(let e): a.run.fail(e)
                }
            }
        }
    }

    /// The task options a config's task asks for: the model's prompt style, the task's decode length.
    /// (Also what `Preflight` generates its sample with.)
    static func taskOptions(_ task: TaskSpec, style: PromptStyle, codec: TextCodec?) throws -> TaskOptions {
        var o = TaskOptions(style: style, maxNewTokens: task.maxNewTokens)
        if task.chatTemplate, task.kind.needsTokenizer, let codec {
            guard let template = codec.chatTemplate else {
                throw TaskError.invalidSpec("task '\(task.kind.rawValue)': chat_template: true, but the model ships no chat template (tokenizer_config.json 'chat_template' or GGUF 'tokenizer.chat_template')")
            }
            // One BOS: the template's, unless the tokenizer adds its own (then the template prints none).
            let bos = codec.encode("").isEmpty ? codec.bosText : ""
            o.chat = try ChatFormat(template: template, bosToken: bos, eosToken: codec.eosText)
        }
        return o
    }
}

/// Per (point, sample) results filled by concurrent workers.
private final class ResultTable: @unchecked Sendable {
    private let lock = NSLock()
    private var cells: [[SampleResult?]]
    private var errors: [Error?]
    private var finished = 0

    init(points: Int, samples: Int) {
        cells = Array(repeating: Array(repeating: nil, count: samples), count: points)
        errors = Array(repeating: nil, count: points)
    }
    func fail(_ point: Int, _ error: Error) { lock.withLock { if errors[point] == nil { errors[point] = error } } }
    func failed(_ point: Int) -> Bool { lock.withLock { errors[point] != nil } }
    func set(_ point: Int, _ sample: Int, _ r: SampleResult) { lock.withLock { cells[point][sample] = r } }
    /// Counts a finished sample and runs `body` with the count under the lock (serialised log lines).
    func locked(_ body: (Int) -> Void) { lock.withLock { finished += 1; body(finished) } }
    func results() -> [Result<[SampleResult], Error>] {
        lock.withLock {
            cells.indices.map { p in
                if let e = errors[p] { return .failure(e) }
                return .success(cells[p].map { $0! })
            }
        }
    }
}

/// The next sample index for a worker.
private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0
    func take(below n: Int) -> Int? { lock.withLock { defer { value += 1 }; return value < n ? value : nil } }
}
