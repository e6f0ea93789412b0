// Head pooling: converting multi-head (or wider GQA) KV to fewer groups by mean-pooling, without uptraining.
// Paper: Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints", arXiv 2305.13245.
// Reference: the paper's checkpoint conversion (mean of the K and V projection heads of each group).
import KVCacheCore

/// Stores `kvHeads` KV heads instead of the model's Hkv: each stored head holds the mean of its
/// group of Hkv / kvHeads adjacent heads' keys and values, and the query heads of the whole group
/// attend to it. Pooling the projected, post-RoPE keys equals projecting with mean-pooled K/V
/// weight blocks (and biases) and then applying RoPE, because projection and rotation are linear
/// and every head rotates by the same angles: this is the paper's weight conversion, applied in
/// the cache, no checkpoint rewrite. Without uptraining the quality drops; measure it.
public final class HeadPooling: CachePolicy, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var kvHeads: Int
        public init(kvHeads: Int) { self.kvHeads = kvHeads }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "head_pooling", family: .sharing, summary: "stores fewer KV heads, each the mean of its group (MHA -> GQA/MQA without uptraining)",
            defaults: Config(kvHeads: 1),
            parameters: [.int("kv_heads", \.kvHeads, .atLeast(1), required: true, help: "KV heads stored after pooling; must divide the model's")],
            sample: "kv_heads: 1",
            // More heads than any model's: every head is stored (the full cache).
            examples: { n, _ in [Config(kvHeads: n == nil ? 1 << 20 : 1)] })
        /// A target that does not divide the model's KV heads is rejected when the policy is made for a model.
        public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name, storedKVHeads: kvHeads) }
        public func make() throws -> CachePolicy { try HeadPooling(self) }
        /// Runs its own prefill: pooled K/V change prefill attention from the first layer on.
        public var prefillSharing: PrefillSharing { .none }
    }

    public let config: Config
    public var kvHeads: Int { config.kvHeads }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(kvHeads: Int) throws { try self.init(Config(kvHeads: kvHeads)) }


}
