// MiniCache: training-free KV-cache compression in depth, by merging adjacent layers.
// Paper: Liu et al., "MiniCache: KV Cache Compression in Depth Dimension for Large Language Models", NeurIPS 2024, arXiv 2405.14366.
// Reference: the paper's Sec. 4 and Algorithm 1 (SLERP of the pair's directions, per-layer norms, retention of divergent tokens); no official code.
import KVCache

/// From `startLayer` (default L/2) layers are paired (s, s+1), (s+2, s+3), ...; per token and KV
/// head the pair stores one merged key direction and one merged value direction (SLERP at t,
/// default 0.6) and each layer its own key and value norms, so a merged token costs 2d + 4 floats
/// for the two layers instead of 4d. The `retainFraction` (default 5%) most divergent tokens stay
/// unmerged in both layers. Merging runs at every step end of the pair's upper layer (the prompt
/// at prefill, then each generated token), after any eviction; the cache's stores hold the merged
/// representation, so bytes stored are measured from it (`LayerMerge`, `MergedDirections`).
/// Keys are merged after RoPE: both layers' keys of a token share its rotation, which preserves
/// norms and angles.
public final class MiniCache: CachePolicy {
    public let spec: LayerMergeSpec

    public init(startLayer: Int? = nil, t: Double = 0.6, retainFraction: Double = 0.05) throws {
        if let s = startLayer, s < 0 {
            throw PolicyError.invalidParameter(policy: "minicache", field: "start_layer", message: "expected >= 0, got \(s)")
        }
        guard t >= 0 && t <= 1 else {
            throw PolicyError.invalidParameter(policy: "minicache", field: "t", message: "expected an interpolation weight in [0, 1], got \(t)")
        }
        guard retainFraction >= 0 && retainFraction <= 1 else {
            throw PolicyError.invalidParameter(policy: "minicache", field: "retain_fraction",
                                               message: "expected a fraction of tokens in [0, 1], got \(retainFraction)")
        }
        spec = LayerMergeSpec(startLayer: startLayer, t: Float(t), retainFraction: retainFraction)
    }

    public var name: String { "minicache(start=\(spec.startLayer.map(String.init) ?? "L/2"),t=\(spec.t),retain=\(spec.retainFraction))" }
    public var layerMerge: LayerMergeSpec? { spec }
}
