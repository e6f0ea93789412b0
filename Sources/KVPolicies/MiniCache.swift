// MiniCache: training-free KV-cache compression in depth, by merging adjacent layers.
// Paper: Liu et al., "MiniCache: KV Cache Compression in Depth Dimension for Large Language Models", NeurIPS 2024, arXiv 2405.14366.
// Reference: the paper's Sec. 4 and Algorithm 1 (SLERP of the pair's directions, per-layer norms, retention of divergent tokens); no official code.
import KVCacheCore

/// From `startLayer` (default L/2) layers are paired (s, s+1), (s+2, s+3), ...; per token and KV
/// head the pair stores one merged key direction and one merged value direction (SLERP at t,
/// default 0.6) and each layer its own key and value norms, so a merged token costs 2d + 4 floats
/// for the two layers instead of 4d. The `retainFraction` (default 5%) most divergent tokens stay
/// unmerged in both layers. Merging runs at every step end of the pair's upper layer (the prompt
/// at prefill, then each generated token), after any eviction; the cache's stores hold the merged
/// representation, so bytes stored are measured from it (`LayerMerge`, `MergedDirections`).
/// Keys are merged after RoPE: both layers' keys of a token share its rotation, which preserves
/// norms and angles.
public final class MiniCache: CachePolicy, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var startLayer: Int?
        public var t: Double
        public var retainFraction: Double
        public init(startLayer: Int? = nil, t: Double = 0.6, retainFraction: Double = 0.05) {
            self.startLayer = startLayer; self.t = t; self.retainFraction = retainFraction
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "minicache", family: .sharing, summary: "merges adjacent layers' K/V directions (SLERP), per-layer norms; divergent tokens stay unmerged ([sharing.md](sharing.md#minicache))",
            defaults: Config(),
            parameters: [
                PolicyParameter(keys: ["start_layer"], type: "integer", help: "first layer of the first merged pair (half: L/2)", defaultText: "L/2",
                                read: { c, p in   // `half`, as labels write the default, or a layer
                                    if let v = p["start_layer"] { c.startLayer = try v.stringValue() == "half" ? nil : try v.intValue() }
                                },
                                write: { c, _ in [("start_layer", c.startLayer.map(String.init) ?? "half")] },
                                check: { c, policy in if let s = c.startLayer { try Bound<Int>.atLeast(0).check("start_layer", s, policy: policy) } }),
                .double("t", \.t, .unit("an interpolation weight in [0, 1]"), help: "SLERP weight of the upper layer"),
                .double("retain_fraction", \.retainFraction, .unit("a fraction of tokens in [0, 1]"), help: "most divergent tokens kept unmerged"),
            ],
            sample: "retain_fraction: 0.05",
            examples: { n, _ in n == nil ? [Config(retainFraction: 1)] : [Config(startLayer: 0), Config(startLayer: 0, t: 0.5, retainFraction: 0)] })
        public var layout: StorageLayout {
            StorageLayout(owner: Self.descriptor.name, layerMerge: LayerMergeSpec(startLayer: startLayer, t: Float(t), retainFraction: retainFraction))
        }
        public func make() throws -> CachePolicy { try MiniCache(self) }
        /// Shares the whole dense prefill: merges at step ends, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var spec: LayerMergeSpec { config.layout.layerMerge! }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(startLayer: Int? = nil, t: Double = Config.descriptor.defaults.t,
                            retainFraction: Double = Config.descriptor.defaults.retainFraction) throws {
        try self.init(Config(startLayer: startLayer, t: t, retainFraction: retainFraction))
    }

}
