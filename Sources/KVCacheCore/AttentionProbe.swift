/// Instrumentation of the attention the cache computes, for metrics (attention recall, output
/// error). Unlike a policy, a probe changes nothing; it is called only when set.
public protocol AttentionProbe: AnyObject {
    /// A decode step of `layer`, KV head `head`: probabilities [g, n] over the store tokens at
    /// `indices` (nil = all n tokens of `store`, in order). Original positions: store.position(i).
    func decodeProbabilities(layer: Int, head: Int, store: HeadStore, indices: [Int32]?,
                             probs: UnsafePointer<Float>, count n: Int)
    /// The attention output of the new rows of `layer`: [rows, H * d], before the output projection.
    func attentionOutput(layer: Int, phase: Phase, rows: Int, output: UnsafePointer<Float>)
}
