import Foundation
import KVTensor
import KVCacheCore

/// How the next token is chosen.
public enum Sampling: Equatable, Sendable {
    case greedy
    /// Temperature softmax, restricted to the smallest set whose probability reaches topP.
    case sample(temperature: Float, topP: Float, seed: UInt64)
}

/// The result of a generation: new ids plus timings and the cache's measured figures.
public struct GenerationResult: Sendable {
    public var tokens: [Int]
    public var promptLogits: [Float]      // [prompt, V] when requested, else the last row [V]
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    public var stats: CacheStats
    /// Set when the model produced a NaN or infinity: generation stopped there and `tokens` holds
    /// only the tokens chosen from finite logits. Callers must treat it as a failure.
    public var nonFinite: NonFiniteError? = nil
}

extension LlamaModel {
    /// Prefills `prompt`, then decodes up to `maxNewTokens` tokens one at a time through the cache.
    /// Stops at the first non-finite hidden state or logit (`GenerationResult.nonFinite`).
    /// `afterPrefill` sees the cache once the prompt is in (and its eviction has run).
    public func generate(prompt: [Int], maxNewTokens: Int, sampling: Sampling = .greedy,
                         cache: KVCache? = nil, allPromptLogits: Bool = false,
                         stopAt eos: Set<Int> = [], afterPrefill: ((KVCache) -> Void)? = nil) -> GenerationResult {
        precondition(!prompt.isEmpty, "generate needs at least one prompt token")
        let cache = cache ?? makeCache()
        let V = config.vocabSize
        var sampler = Sampler(sampling)
        let t0 = DispatchTime.now().uptimeNanoseconds
        var nonFinite: NonFiniteError?
        var promptLogits: [Float] = []
        do {
            promptLogits = try forwardChecked(prompt, startPosition: cache.stats.tokensSeen, cache: cache, phase: .prefill,
                                              logits: allPromptLogits ? .all : .last)
        } catch let e as NonFiniteError { nonFinite = e } catch { fatalError("\(error)") }
        let t1 = DispatchTime.now().uptimeNanoseconds
        afterPrefill?(cache)
        var last = Array(promptLogits.suffix(V))
        var out: [Int] = []
        while nonFinite == nil, out.count < maxNewTokens {
            let next = sampler.pick(&last)
            out.append(next)
            if eos.contains(next) || out.count == maxNewTokens { break }
            do {
                last = try forwardChecked([next], startPosition: cache.stats.tokensSeen, cache: cache, phase: .decode)
            } catch let e as NonFiniteError { nonFinite = e } catch { fatalError("\(error)") }
        }
        let t2 = DispatchTime.now().uptimeNanoseconds
        return GenerationResult(tokens: out, promptLogits: promptLogits,
                                prefillSeconds: Double(t1 - t0) / 1e9, decodeSeconds: Double(t2 - t1) / 1e9,
                                stats: cache.stats, nonFinite: nonFinite)
    }
}

/// Chooses token ids from logits; deterministic for a seed.
public struct Sampler {
    let mode: Sampling
    var rng: SeededRandom
    public init(_ mode: Sampling) {
        self.mode = mode
        if case .sample(_, _, let seed) = mode { rng = SeededRandom(seed: seed) } else { rng = SeededRandom(seed: 0) }
    }

    /// Picks a token; `logits` [V] may be modified.
    public mutating func pick(_ logits: inout [Float]) -> Int {
        switch mode {
        case .greedy:
            return logits.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: $0.count) }
        case .sample(let temperature, let topP, _):
            guard temperature > 0 else { return logits.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: $0.count) } }
            for i in logits.indices { logits[i] /= temperature }
            logits.withUnsafeMutableBufferPointer { _ = Ops.softmax($0.baseAddress!, count: $0.count) }
            let order = logits.indices.sorted { logits[$0] != logits[$1] ? logits[$0] > logits[$1] : $0 < $1 }
            var kept: [Int] = [], mass: Float = 0
            for i in order {
                kept.append(i); mass += logits[i]
                if mass >= topP { break }
            }
            var u = rng.nextUniform() * mass
            for i in kept {
                u -= logits[i]
                if u <= 0 { return i }
            }
            return kept.last!
        }
    }
}
