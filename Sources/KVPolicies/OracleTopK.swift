// Oracle top-k: exact scores over every token, keep the k best (the upper bound of selection).
// Paper: none (the ideal selector Quest and Loki are measured against; Loki's "exact top-k" baseline).
// Reference: hpcgroup/loki methods/topk (topk over the exact attention scores, per head).
import KVCache
import KVTensor

/// At every decode step in every layer, scores every candidate token exactly (q.k over all d
/// dims), keeps the top k and attends over those. Reads all keys for scoring (metered), so it
/// saves no traffic: it shows how close Quest and Loki get to ideal selection at the same k.
/// GQA: `.kvGroup` (default) ranks by the logits summed over the group's query heads, i.e.
/// (sum_h q_h).k, one choice per KV head; `.queryHead` chooses per query head, reads the union.
public final class OracleTopK: CachePolicy {
    public let topK: SelectionSize
    public let gqa: SelectionGQA

    public init(topK: SelectionSize, gqa: SelectionGQA = .kvGroup) throws {
        try topK.validate(policy: "oracle_topk", field: "top_k")
        self.topK = topK; self.gqa = gqa
    }

    public var name: String { "oracle_topk(k=\(topK),\(gqa.rawValue))" }

    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        guard step.phase == .decode else { return candidates }
        let st = step.stores[head], d = st.headDim, g = step.shape.groupSize
        let n = candidates?.count ?? st.count
        let k = topK.count(of: n)
        guard k < n else { return candidates }
        let scores = Loki.scores(queries: step.queries + head * g * d, groups: g, store: st, rank: d,
                                 indices: candidates, perQueryHead: gqa == .queryHead, scale: 1)
        step.meter.keyBytes += n * d * MemoryLayout<Float>.stride
        return SelectionKernels.select(scores: scores, count: n, heads: gqa == .queryHead ? g : 1, k: k, candidates: candidates)
    }
}
