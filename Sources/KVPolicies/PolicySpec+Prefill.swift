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
    public var sharesDensePrefill: Bool { prefillSharing == .whole }

    /// How much of a shared dense prefill the policy can take.
    public enum PrefillSharing: Int, Comparable, Sendable {
        /// None: the policy changes the prefill from its first layer on (head pooling, Loki).
        case none
        /// The layers below the first one that reads another layer's store (cross-layer sharing:
        /// CLA, KVSharer maps) prefill densely: they are replayed and the model resumes from that
        /// layer on the recorded hidden state (`KVCache.denseLayerPrefix`, `PrefillResume`).
        case leadingLayers
        /// All of it (`sharesDensePrefill`).
        case whole
        public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    }

    /// The policy's declared prefill sharing; a stack takes the least of its children's.
    public var prefillSharing: PrefillSharing {
        switch self {
        case .full, .streamingLLM, .h2o, .snapKV, .pyramidKV, .tova, .knorm, .quest, .oracleTopK, .kivi, .miniCache:
            return .whole
        case .cla:
            return .leadingLayers
        case .headPooling, .loki:
            return .none
        case .stack(let children):
            return children.map(\.prefillSharing).min() ?? .whole
        }
    }
}
