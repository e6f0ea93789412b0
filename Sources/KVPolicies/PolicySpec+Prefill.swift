// Support file, not a policy: which policies can take a shared dense prefill (issue 15 item 1).
// When policies become one descriptor each (issue 14), this capability moves into the descriptor.
import KVCache

extension PolicySpec {
    /// Whether the policy's results do not depend on how the context's prefill ran, so a sweep
    /// may compute the dense prefill once per sample and replay it into this policy's cache
    /// (`KVCache.replay`, KVCache+Replay.swift) instead of running the model again.
    ///
    /// True when prefill attention stays dense and exact for the policy: it stores every appended
    /// token as given, each layer owns its store, and whatever it does (evict, quantize, merge,
    /// shift positions, keep page bounds) happens in `didAppend` or at a layer's step end, after
    /// that layer attended; later layers then see the full cache (kvpress semantics). False for a
    /// policy that changes the prefill itself: cross-layer sharing (CLA, KVSharer maps: a layer
    /// reads another's store), head pooling (stores pooled K/V), and Loki (keys stored in the PCA
    /// basis change prefill attention's rounding; its reference protocol also selects keys per
    /// query row in prefill). A stack shares when every child does. The cache checks the same
    /// conditions at replay (`KVCache.replayablePrefillProblem`) and refuses a policy that fails them.
    public var sharesDensePrefill: Bool {
        switch self {
        case .full, .streamingLLM, .h2o, .snapKV, .pyramidKV, .tova, .knorm, .quest, .oracleTopK, .kivi, .miniCache:
            return true
        case .headPooling, .cla, .loki:
            return false
        case .stack(let children):
            return children.allSatisfy(\.sharesDensePrefill)
        }
    }
}
