// Support file, not a policy: which policies can take a shared dense prefill (issue 15 item 1).
// Each policy declares it on its Config (`PolicyConfig.prefillSharing`); a stack takes the least.
import KVCacheCore

/// How much of a shared dense prefill a policy can take: a sweep computes each sample's dense
/// prefill once (the full-cache reference, recorded) and replays it into the caches of the policies
/// that do not change it (`KVCache.replay`, KVCache+Replay.swift).
///
/// A policy shares the whole prefill when prefill attention stays dense and exact for it: it stores
/// every appended token as given, each layer owns its store, and whatever it does (evict, quantize,
/// merge, shift positions, keep page bounds) happens in `didAppend` or at a layer's step end, after
/// that layer attended; later layers then see the full cache (kvpress semantics). Policies that
/// change the prefill itself share none of it: head pooling (stores pooled K/V) and Loki (keys
/// stored in the PCA basis change prefill attention's rounding; its reference protocol also selects
/// keys per query row in prefill). Cross-layer sharing (CLA, KVSharer maps) shares the layers below
/// its first shared layer. The cache checks the same conditions at replay
/// (`KVCache.replayablePrefillProblem`, `denseLayerPrefix`) and refuses a policy that fails them.
public enum PrefillSharing: Int, Comparable, Sendable {
    /// None: the policy runs its own prefill (the default of `PolicyConfig`).
    case none
    /// The layers below the first one that reads another layer's store prefill densely: they are
    /// replayed and the model resumes from that layer on the recorded hidden state
    /// (`KVCache.denseLayerPrefix`, `PrefillResume`).
    case leadingLayers
    /// All of it (`PolicySpec.sharesDensePrefill`).
    case whole
    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

extension PolicySpec {
    /// The policy's declared prefill sharing (its Config's); a stack takes the least of its children's.
    public var prefillSharing: PrefillSharing {
        if let children { return children.map(\.prefillSharing).min() ?? .whole }
        return config?.prefillSharing ?? .none
    }

    /// Whether a sweep may replay the reference's whole dense prefill into this policy's cache.
    public var sharesDensePrefill: Bool { prefillSharing == .whole }
}
