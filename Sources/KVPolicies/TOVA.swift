// TOVA: Token Omission Via Attention.
// Paper: Oren et al., "Transformers are Multi-State RNNs", arXiv 2401.06104.
// Reference: github.com/schwartz-lab-NLP/TOVA (tova_cache.py); kvpress TOVAPress.
import KVCache

/// Scores tokens by the newest query's attention, averaged over *all* query heads of the layer,
/// and keeps the same top tokens for every head; the newest token is always kept (kvpress pads
/// it with max + 1). At prefill the newest query is the prompt's last token; during decoding it
/// is the generated token (probabilities observed from the attention kernel). No forced sinks.
public final class TOVA: ScoredEviction {
    public let budget: Budget
    public let schedule: EvictionSchedule
    private var layerScores: [[Float]] = []     // per layer: mean probability per stored token [T]
    private var prefillMemo: (layer: Int, seen: Int, scores: [Float])?

    public init(budget: Budget, schedule: EvictionSchedule = .always) throws {
        try budget.validate(policy: "tova")
        self.budget = budget; self.schedule = schedule
    }

    public var name: String { "tova(budget=\(budget),\(schedule))" }

    public func bind(shape: CacheShape) {
        layerScores = Array(repeating: [], count: shape.layers)
    }

    public func reset() { prefillMemo = nil; layerScores = layerScores.map { _ in [] } }

    public func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {
        let l = step.layer
        if head == 0 { layerScores[l] = Array(repeating: 0, count: step.stores[head].count) }
        accumulate(probs, rows: step.shape.groupSize, count: n, indices: indices, scale: 1 / Float(step.shape.queryHeads),
                   into: &layerScores[l])
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        var s: [Float]
        if step.phase == .decode {
            s = layerScores[step.layer]
        } else if let m = prefillMemo, m.layer == step.layer, m.seen == step.tokensSeen {
            s = m.scores
        } else {
            s = prefillScores(step)
            prefillMemo = (step.layer, step.tokensSeen, s)
        }
        s[s.count - 1] = (s.max() ?? 0) + 1   // the newest token always stays
        return s
    }

    /// The last prompt token's attention over every stored token, averaged over all query heads.
    private func prefillScores(_ step: LayerStep) -> [Float] {
        let d = step.shape.headDim, hq = step.shape.queryHeads, g = step.shape.groupSize
        let n = step.stores[0].count
        var mean = [Float](repeating: 0, count: n), p = [Float](repeating: 0, count: n)
        let last = step.queries + (step.rows - 1) * hq * d
        p.withUnsafeMutableBufferPointer { pb in
            for qh in 0..<hq {
                Attention.probabilities(q: last + qh * d, store: step.stores[qh / g], visible: n, scale: step.scale, into: pb.baseAddress!)
                for j in 0..<n { mean[j] += pb[j] / Float(hq) }
            }
        }
        return mean
    }
}
