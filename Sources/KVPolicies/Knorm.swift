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

    public var name: String { "knorm(budget=\(budget),\(schedule.rawValue))" }

    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        let st = step.stores[head], d = st.headDim
        return (0..<st.count).map { j in -Ops.dot(st.keys + j * d, st.keys + j * d, d).squareRoot() }
    }
}
