import Foundation
import KVCacheCore
import KVModel
import KVTensor

/// What running one task sample through one cache produced.
struct SampleOutcome {
    var generated: [Int] = []
    /// The generated text as scored: decoded without special tokens, cut before the first stop
    /// string (the ids as numbers when the task has no codec).
    var text = ""
    /// Logits rows of teacher-forced positions: position -> [V] (fidelity, perplexity, mqar).
    var rows: [Int: [Float]] = [:]
    var stats = CacheStats()
    var prefillSeconds = 0.0
    var prefillTokens = 0
    /// Seconds spent replaying a shared dense prefill into this cache (nil: the policy ran its own).
    var replaySeconds: Double?
    /// The layers below this one were replayed from the shared prefill, the rest computed (nil: none).
    var resumedAt: Int?
    var decodeSeconds = 0.0
    var decodeSteps = 0
    /// Kept original positions per layer and KV head after the prompt (context + suffix), as the
    /// layer reads them (a layer that shares another's store sees that store's tokens).
    var retained: [[[Int]]] = []
    /// Payload bytes each layer's own store held per KV head after the prompt (0 for a layer that
    /// stores nothing: cross-layer sharing).
    var ownBytes: [[Int]] = []
    /// Mean tokens a layer x KV head can read at the end of the run.
    var finalTokens = 0.0
    /// The policy's own figures over the sequence (`CachePolicy.runMetrics`).
    var policyMetrics: [(String, Double)] = []
    var probe: RecordingProbe?
    /// The dense prefill this run recorded for others to replay (`PrefillSource.record`).
    var shared: SharedPrefill?
}

/// A sample's dense prefill of its first prompt part (the context, or context + question when the
/// question is compressed with it), computed once by the full-cache reference and replayed into
/// the cache of every policy that `sharesDensePrefill` (docs/benchmarks/sweep.md).
final class SharedPrefill: @unchecked Sendable {
    let recording: PrefillRecording
    /// The last position's logits [V]: the same for every policy that shares the prefill.
    let logits: [Float]
    /// Wall seconds of the dense prefill (what a sharing policy's prefill timing reports).
    let seconds: Double
    init(recording: PrefillRecording, logits: [Float], seconds: Double) {
        self.recording = recording; self.logits = logits; self.seconds = seconds
    }
}

/// Where a run's first prefill comes from.
enum PrefillSource {
    /// The model runs it on this cache.
    case own
    /// The model runs it on this cache, and its inputs are recorded for replay (the reference),
    /// with the hidden states entering `hiddenLayers` (for resumed prefills).
    case record(hiddenLayers: Set<Int>)
    /// A recorded dense prefill is replayed into this cache; the model does not run.
    case replay(SharedPrefill)
    /// The recorded calls of the layers below `layer` are replayed; the model runs from `layer` on.
    case resume(SharedPrefill, layer: Int)
}

/// When generation stops: at an end-of-sequence id, at a stop string, or at the sample's
/// `maxNewTokens` (docs/tasks.md, "Generation").
struct StopRule {
    var eos: Set<Int> = []
    /// Stop strings: generation ends once the decoded output contains one; the output is cut before it.
    var strings: [String] = []
    /// Decodes generated ids for the stop strings and the scored text (nil: no tokenizer).
    var codec: TextCodec?

    /// The text of `ids` as scored (cut before the earliest stop string) and whether one occurred.
    func text(_ ids: [Int]) -> (text: String, stopped: Bool) {
        let full = codec?.decode(ids) ?? ids.map(String.init).joined(separator: " ")
        var cut: String.Index? = nil
        for s in strings where !s.isEmpty {
            if let r = full.range(of: s), cut.map({ r.lowerBound < $0 }) ?? true { cut = r.lowerBound }
        }
        guard let c = cut else { return (full, false) }
        return (String(full[..<c]), true)
    }
}

/// One sample through one cache, in steps: `prefill` runs the prompt's prefilled part (the model's
/// own forward, or a replayed dense prefill), then a driver feeds one token at a time (`nextToken`,
/// then `accept` with its logits): the question's tokens through the decode path, then the greedy
/// answer until EOS, a stop string or `maxNewTokens`. The same steps for the full-cache reference
/// and for every policy; `SweepRunner.decodeLockstep` decodes many runs together. A run with a
/// `headMask` (head ablation, HeadAblation.swift) applies it in its own forwards and decode rows
/// (a sweep never sets the model's `headMask`, which every run would share). NaN or infinity in the model's numbers ends the run with
/// `failure` (the run is recorded as failed, never scored).
final class SequenceRun {
    let model: LlamaModel
    private(set) var cache: KVCache?
    let sample: TaskSample
    let task: TaskSpec
    let stop: StopRule
    private(set) var out = SampleOutcome()
    private var position = 0
    private var last: [Float] = []
    private var suffixFed = 0
    private var promptIn = false
    private(set) var finished = false
    /// Why the run stopped early (a `NonFiniteError`); nil for a run that finished.
    private(set) var failure: Error?
    /// Query heads this run switches off (nil: the intact model, as the reference always runs).
    let headMask: HeadMask?
    /// Wall seconds this run took: its prefill (or replay) and its share of the lockstep decode steps.
    private(set) var seconds = 0.0

    init(model: LlamaModel, cache: KVCache, sample: TaskSample, task: TaskSpec, probe: RecordingProbe?, stop: StopRule,
         headMask: HeadMask? = nil) {
        self.model = model; self.cache = cache; self.sample = sample; self.task = task; self.stop = stop
        self.headMask = headMask
        out.probe = probe
        cache.probe = probe
    }

    /// Whether the question goes through the decode path token by token.
    private var feedsSuffix: Bool { task.kind.isTeacherForced || task.suffixMode == .decode }

    /// Runs the prompt's prefilled part: the context (with the question when it is compressed with
    /// it, then the question uncompressed for `suffix: prefill`). Throws `NonFiniteError`.
    func prefill(_ source: PrefillSource) throws {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let ctx = sample.context, suffix = sample.suffix
        if !task.kind.isTeacherForced && task.suffixMode == .compressed {
            try prefill(ctx + suffix, compress: true, source: source)
        } else {
            try prefill(ctx, compress: true, source: source)
            if !task.kind.isTeacherForced && task.suffixMode == .prefill { try prefill(suffix, compress: false, source: .own) }
        }
        if task.kind.isTeacherForced { out.rows[position - 1] = last }
        seconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    private func prefill(_ tokens: [Int], compress: Bool, source: PrefillSource) throws {
        guard !tokens.isEmpty, let cache else { return }
        cache.compressionEnabled = compress
        defer { cache.compressionEnabled = true }
        out.prefillTokens += tokens.count
        let start = position
        position += tokens.count
        func forward() throws -> [Float] {
            try model.forwardChecked(tokens, startPosition: start, cache: cache, phase: .prefill, headMask: headMask)
        }
        switch source {
        case .replay(let shared):
            precondition(start == 0 && shared.recording.tokens == tokens.count,
                         "shared prefill of \(shared.recording.tokens) tokens replayed for \(tokens.count) at \(start)")
            out.replaySeconds = clock { cache.replay(shared.recording) }
            out.prefillSeconds += shared.seconds
            last = shared.logits
        case .resume(let shared, let layer):
            precondition(start == 0, "a resumed prefill starts the sequence")
            cache.resume = PrefillResume(recording: shared.recording, layer: layer)
            defer { cache.resume = nil }
            out.prefillSeconds += try clock { last = try forward() }
            out.resumedAt = layer
        case .record(let hiddenLayers):
            let recorder = PrefillRecorder(startTokens: cache.stats.tokensSeen, hiddenLayers: hiddenLayers)
            cache.recorder = recorder
            defer { cache.recorder = nil }
            let t = try clock { last = try forward() }
            out.prefillSeconds += t
            out.shared = SharedPrefill(recording: recorder.finish(), logits: last, seconds: t)
        case .own:
            out.prefillSeconds += try clock { last = try forward() }
        }
    }

    /// Ends the run early on `error` (non-finite numbers in its forward): it has no outcome, and
    /// its cache is released.
    func fail(_ error: Error) {
        failure = error
        finished = true
        cache?.probe = nil
        cache = nil
    }

    /// The token to decode next, or nil once the run is over (then its outcome is final). Past the
    /// question, picks the greedy token and checks EOS, the stop strings and the length limit.
    func nextToken() -> Int? {
        guard !finished, let cache else { return nil }
        if feedsSuffix && suffixFed < sample.suffix.count {
            out.probe?.begin()
            return sample.suffix[suffixFed]
        }
        if !promptIn {
            promptIn = true
            (out.retained, out.ownBytes) = (SampleEvaluator.snapshot(cache), SampleEvaluator.ownBytes(cache))
        }
        guard !task.kind.isTeacherForced, out.generated.count < sample.maxNewTokens else { return finish() }
        let next = last.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: model.config.vocabSize) }
        out.generated.append(next)
        let stopped = !stop.strings.isEmpty && stop.text(out.generated).stopped
        if stop.eos.contains(next) || stopped || out.generated.count == sample.maxNewTokens { return finish() }
        out.probe?.begin()
        return next
    }

    /// The logits [V] of the token `nextToken` returned; `seconds`: this run's share of the step.
    func accept(_ logits: [Float], seconds stepSeconds: Double) {
        out.probe?.end()
        last = logits
        position += 1
        out.decodeSeconds += stepSeconds; out.decodeSteps += 1
        seconds += stepSeconds
        if feedsSuffix && suffixFed < sample.suffix.count {
            suffixFed += 1
            if task.kind.isTeacherForced { out.rows[position - 1] = last }
        }
    }

    /// The dense prefill this run recorded (`prefill(.record)`), for others to replay.
    var sharedPrefill: SharedPrefill? { out.shared }

    /// The position the next token goes to.
    var nextPosition: Int { position }

    private func finish() -> Int? {
        finished = true
        if !task.kind.isTeacherForced { out.text = stop.text(out.generated).text }
        if let cache {
            out.stats = cache.stats
            let counts = (0..<cache.shape.layers).flatMap { l in (0..<cache.shape.kvHeads).map { cache.count(layer: l, head: $0) } }
            out.finalTokens = Double(counts.reduce(0, +)) / Double(max(counts.count, 1))
            out.policyMetrics = cache.policy.runMetrics
            cache.probe = nil
        }
        cache = nil                                  // the outcome is all that is kept
        return nil
    }

    /// What the run produced (call once `nextToken` returned nil).
    var outcome: SampleOutcome { precondition(finished, "outcome of an unfinished run"); return out }
}

/// Store snapshots shared by the runs and `PromptRun`.
enum SampleEvaluator {
    static func ownBytes(_ cache: KVCache) -> [[Int]] {
        (0..<cache.shape.layers).map { l in
            (0..<cache.shape.kvHeads).map { h in cache.policy.sourceLayer(l) == l ? cache.stores[l][h].payloadBytes : 0 }
        }
    }

    static func snapshot(_ cache: KVCache) -> [[[Int]]] {
        (0..<cache.shape.layers).map { l in
            (0..<cache.shape.kvHeads).map { h in
                let s = cache.stores[cache.policy.sourceLayer(l)][h]
                return (0..<s.count).map { s.position($0) }.sorted()
            }
        }
    }
}

/// Wall-clock seconds of a closure.
func clock(_ body: () throws -> Void) rethrows -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}
