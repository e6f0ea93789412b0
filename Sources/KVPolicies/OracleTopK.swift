// Oracle top-k: exact scores over every token, keep the k best (the upper bound of selection).
// Paper: none (the ideal selector Quest and Loki are measured against; Loki's "exact top-k" baseline).
// Reference: hpcgroup/loki methods/topk (topk over the exact attention scores, per head).
import KVCacheCore
import KVTensor

/// At every decode step in every layer, scores every candidate token exactly (q.k over all d
/// dims), keeps the top k and attends over those. Reads all keys for scoring (metered), so it
/// saves no traffic: it shows how close Quest and Loki get to ideal selection at the same k.
/// GQA: `.kvGroup` (default) ranks by the logits summed over the group's query heads, i.e.
/// (sum_h q_h).k, one choice per KV head; `.queryHead` chooses per query head, reads the union.
public final class OracleTopK: CachePolicy, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var topK: SelectionSize
        public var gqa: SelectionGQA
        public init(topK: SelectionSize, gqa: SelectionGQA = .kvGroup) { self.topK = topK; self.gqa = gqa }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "oracle_topk", family: .selection, summary: "exact scores over every token, attend the top k: the upper bound of selection ([selection.md](selection.md))",
            defaults: Config(topK: .tokens(1)),
            parameters: [.selectionSize(\.topK, required: true), .gqa(\.gqa)],
            // The exact top-k baseline of the selection papers (hpcgroup/loki methods/baselines/topk/
            // modify_llama.py:108-122; Quest's oracle): per query head. The Loki baseline also masks the
            // prefill rows; KVLab's oracle selects during decoding only (docs/config.md).
            setups: [PolicySetupValues("paper", [("gqa", "query_head")]), PolicySetupValues("kvlab", [("gqa", "kv_group")])],
            sample: "top_k: 48",
            examples: { n, _ in
                let k = n.map(SelectionSize.tokens) ?? .fraction(1)
                return [Config(topK: k), Config(topK: k, gqa: .queryHead)]
            })
        public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name, selects: true) }
        public func make() throws -> CachePolicy { try OracleTopK(self) }
        /// Shares the whole dense prefill: selects in decode only; prefill attention stays dense.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var topK: SelectionSize { config.topK }
    public var gqa: SelectionGQA { config.gqa }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(topK: SelectionSize, gqa: SelectionGQA = Config.descriptor.defaults.gqa) throws {
        try self.init(Config(topK: topK, gqa: gqa))
    }


    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        SelectionKernels.decodeTopK(step, head: head, candidates: candidates, size: topK, gqa: gqa) { q, st, n in
            step.meter.keyBytes += n * st.headDim * MemoryLayout<Float>.stride
            return Loki.scores(queries: q, groups: step.shape.groupSize, store: st, rank: st.headDim,
                               indices: candidates, perQueryHead: gqa == .queryHead, scale: 1)
        }
    }
}
