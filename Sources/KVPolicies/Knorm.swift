// Knorm: keep the keys with the smallest L2 norm.
// Paper: Devoto et al., "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression", arXiv 2406.11430.
// Reference: NVIDIA/kvpress KnormPress (score = -||k||).
import KVCacheCore
import KVTensor

/// Scores each stored key by its negated L2 norm (per KV head) and keeps the top `capacity`.
public final class Knorm: ScoredEviction, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var schedule: EvictionSchedule
        public init(budget: Budget, schedule: EvictionSchedule = .prefill) { self.budget = budget; self.schedule = schedule }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "knorm", family: .eviction, summary: "keeps the keys with the smallest L2 norm",
            defaults: Config(budget: .tokens(1)),
            parameters: [.budget(\.budget), .schedule(\.schedule)],
            sample: "keep: 0.25",
            examples: { n, _ in [Config(budget: .tokens(n ?? 1 << 20)), Config(budget: .tokens(n ?? 1 << 20), schedule: .always)] })
        public func make() throws -> CachePolicy { try Knorm(self) }
        /// Shares the whole dense prefill: evicts at step ends, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var budget: Budget { config.budget }
    public var schedule: EvictionSchedule { config.schedule }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(budget: Budget, schedule: EvictionSchedule = Config.descriptor.defaults.schedule) throws {
        try self.init(Config(budget: budget, schedule: schedule))
    }


    /// Negated key norms per stored token, computed once on append: [layer][kvHead][token].
    private var negNorms: [[[Float]]] = []
    public var metadataBytes: Int { negNorms.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count * 4 } } }

    public func bind(shape: CacheShape) {
        negNorms = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
    }
    public func reset() { negNorms = negNorms.map { $0.map { _ in [] } } }

    public func didAppend(_ step: LayerStep) {
        for (h, st) in step.stores.enumerated() {
            let d = st.headDim, new = negNorms[step.layer][h].count..<st.count
            st.rows.withFloat32(new) { keys, _ in
                for j in 0..<new.count { negNorms[step.layer][h].append(-Ops.dot(keys + j * d, keys + j * d, d).squareRoot()) }
            }
        }
    }

    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        applyRetention(&negNorms[layer][head], kept: kept)
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] { negNorms[step.layer][head] }
}
