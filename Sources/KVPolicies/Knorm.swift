// Knorm: keep the keys with the smallest L2 norm.
// Paper: Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression", arXiv 2406.11430.
// Reference: NVIDIA/kvpress KnormPress (score = -||k||).
import KVCache
import KVTensor

/// Scores each stored key by its negated L2 norm (per KV head) and keeps the top `capacity`.
public final class Knorm: ScoredEviction {
    public let budget: Budget
    public let schedule: EvictionSchedule

    public init(budget: Budget, schedule: EvictionSchedule = .prefill) throws {
        try budget.validate(policy: "knorm")
        self.budget = budget; self.schedule = schedule
    }

    public var name: String { "knorm(budget=\(budget),\(schedule))" }

    /// Negated key norms per stored token, computed once on append: [layer][kvHead][token].
    private var negNorms: [[[Float]]] = []
    public var metadataBytes: Int { negNorms.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count * 4 } } }

    public func bind(shape: CacheShape) {
        negNorms = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
    }
    public func reset() { negNorms = negNorms.map { $0.map { _ in [] } } }

    public func didAppend(_ step: LayerStep) {
        for (h, st) in step.stores.enumerated() {
            let d = st.headDim
            for j in negNorms[step.layer][h].count..<st.count {
                negNorms[step.layer][h].append(-Ops.dot(st.keys + j * d, st.keys + j * d, d).squareRoot())
            }
        }
    }

    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        applyRetention(&negNorms[layer][head], kept: kept)
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] { negNorms[step.layer][head] }
}
