import Foundation
import KVCache
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
    /// The model runs it on this cache, and its inputs are recorded for replay (the reference).
    case record
    /// A recorded dense prefill is replayed into this cache; the model does not run.
    case replay(SharedPrefill)
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

/// Runs one sample through a fresh cache managed by `policy` (prefill, suffix, decode), the same
/// way for the full-cache reference and for every policy.
enum SampleEvaluator {
    static func run(model: LlamaModel, cache: KVCache, sample: TaskSample, task: TaskSpec,
                    probe: RecordingProbe?, stop: StopRule, prefillSource: PrefillSource = .own) -> SampleOutcome {
        var out = SampleOutcome()
        out.probe = probe
        cache.probe = probe
        defer { cache.probe = nil }
        let V = model.config.vocabSize
        let ctx = sample.context, suffix = sample.suffix
        var position = 0
        var last: [Float] = []
        var source = prefillSource

        func prefill(_ tokens: [Int], compress: Bool) {
            guard !tokens.isEmpty else { return }
            cache.compressionEnabled = compress
            defer { cache.compressionEnabled = true }
            out.prefillTokens += tokens.count
            let first = position == 0
            position += tokens.count
            switch (first, source) {
            case (true, .replay(let shared)):
                precondition(shared.recording.tokens == tokens.count, "shared prefill of \(shared.recording.tokens) tokens replayed for \(tokens.count)")
                out.replaySeconds = clock { cache.replay(shared.recording) }
                out.prefillSeconds += shared.seconds
                last = shared.logits
            case (true, .record):
                let recorder = PrefillRecorder(startTokens: cache.stats.tokensSeen)
                cache.recorder = recorder
                let t = clock { last = model.forward(tokens, startPosition: 0, cache: cache, phase: .prefill) }
                cache.recorder = nil
                out.prefillSeconds += t
                out.shared = SharedPrefill(recording: recorder.finish(), logits: last, seconds: t)
            default:
                out.prefillSeconds += clock { last = model.forward(tokens, startPosition: position - tokens.count, cache: cache, phase: .prefill) }
            }
            source = .own
        }
        func decode(_ token: Int) {
            probe?.begin()
            let t = clock { last = model.forward([token], startPosition: position, cache: cache, phase: .decode) }
            probe?.end()
            out.decodeSeconds += t; out.decodeSteps += 1
            position += 1
        }

        if task.kind.isTeacherForced {
            prefill(ctx, compress: true)
            out.rows[position - 1] = last
            for t in suffix {
                decode(t)
                out.rows[position - 1] = last
            }
            (out.retained, out.ownBytes) = (snapshot(cache), ownBytes(cache))
        } else {
            switch task.suffixMode {
            case .compressed: prefill(ctx + suffix, compress: true)
            case .prefill: prefill(ctx, compress: true); prefill(suffix, compress: false)
            case .decode: prefill(ctx, compress: true); suffix.forEach(decode)
            }
            (out.retained, out.ownBytes) = (snapshot(cache), ownBytes(cache))
            var stopped = false
            while out.generated.count < sample.maxNewTokens {
                let next = last.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: V) }
                out.generated.append(next)
                if !stop.strings.isEmpty { stopped = stop.text(out.generated).stopped }
                if stop.eos.contains(next) || stopped || out.generated.count == sample.maxNewTokens { break }
                decode(next)
            }
            out.text = stop.text(out.generated).text
        }
        out.stats = cache.stats
        let counts = (0..<cache.shape.layers).flatMap { l in (0..<cache.shape.kvHeads).map { cache.count(layer: l, head: $0) } }
        out.finalTokens = Double(counts.reduce(0, +)) / Double(max(counts.count, 1))
        return out
    }

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
func clock(_ body: () -> Void) -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}
