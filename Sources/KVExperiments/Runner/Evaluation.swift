import Foundation
import KVCache
import KVModel
import KVTensor

/// What running one task sample through one cache produced.
struct SampleOutcome {
    var generated: [Int] = []
    var text = ""
    /// Logits rows of teacher-forced positions: position -> [V] (fidelity, perplexity, mqar).
    var rows: [Int: [Float]] = [:]
    var stats = CacheStats()
    var prefillSeconds = 0.0
    var prefillTokens = 0
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
}

/// Runs one sample through a fresh cache managed by `policy` (prefill, suffix, decode), the same
/// way for the full-cache reference and for every policy.
enum SampleEvaluator {
    static func run(model: LlamaModel, cache: KVCache, sample: TaskSample, task: TaskSpec,
                    probe: RecordingProbe?, eos: Set<Int>) -> SampleOutcome {
        var out = SampleOutcome()
        out.probe = probe
        cache.probe = probe
        defer { cache.probe = nil }
        let V = model.config.vocabSize
        let ctx = sample.context, suffix = sample.suffix
        var position = 0
        var last: [Float] = []

        func prefill(_ tokens: [Int], compress: Bool) {
            guard !tokens.isEmpty else { return }
            cache.compressionEnabled = compress
            let t = clock { last = model.forward(tokens, startPosition: position, cache: cache, phase: .prefill) }
            cache.compressionEnabled = true
            out.prefillSeconds += t; out.prefillTokens += tokens.count
            position += tokens.count
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
            while out.generated.count < sample.maxNewTokens {
                let next = last.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: V) }
                out.generated.append(next)
                if eos.contains(next) || out.generated.count == sample.maxNewTokens { break }
                decode(next)
            }
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
