// Head pooling: converting multi-head (or wider GQA) KV to fewer groups by mean-pooling, without uptraining.
// Paper: Ainslie et al., "GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints", arXiv 2305.13245.
// Reference: the paper's checkpoint conversion (mean of the K and V projection heads of each group).
import KVCache

/// Stores `kvHeads` KV heads instead of the model's Hkv: each stored head holds the mean of its
/// group of Hkv / kvHeads adjacent heads' keys and values, and the query heads of the whole group
/// attend to it. Pooling the projected, post-RoPE keys equals projecting with mean-pooled K/V
/// weight blocks (and biases) and then applying RoPE, because projection and rotation are linear
/// and every head rotates by the same angles: this is the paper's weight conversion, applied in
/// the cache, no checkpoint rewrite. Without uptraining the quality drops; measure it.
public final class HeadPooling: CachePolicy {
    public let kvHeads: Int

    public init(kvHeads: Int) throws {
        guard kvHeads >= 1 else {
            throw PolicyError.invalidParameter(policy: "head_pooling", field: "kv_heads", message: "expected >= 1, got \(kvHeads)")
        }
        self.kvHeads = kvHeads
    }

    public var name: String { "head_pooling(kv_heads=\(kvHeads))" }

    public func storedKVHeads(modelKVHeads: Int) -> Int {
        // As asked: a target that does not divide the model's KV heads (or exceeds them) is rejected
        // by the runner and by `kvlab validate`, never silently clamped to "no pooling".
        kvHeads
    }
}
