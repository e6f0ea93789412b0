import Foundation

/// What a policy needs from storage, as opposed to what it decides (the runtime hooks of
/// `CachePolicy`): how tokens are stored (codes, merged layers, pooled heads, a key basis, shifted
/// positions) and what the policy keeps alongside the stores that a storage change would break.
/// A stack's layouts combine once, when the stack is built (`combine`), with one message per
/// conflict; the cache then reads one layout and needs no per-policy checks.
public struct StorageLayout {
    /// The policy (or stack) the layout belongs to, as configs name it: conflict messages name it.
    public var owner: String
    /// KIVI: older tokens as packed integer codes.
    public var quantization: QuantizationSpec?
    /// MiniCache: adjacent layers share merged directions.
    public var layerMerge: LayerMergeSpec?
    /// Head pooling: KV heads stored (each the mean of its group of the model's); nil = the model's.
    public var storedKVHeads: Int?
    /// SVD head compression: how each stored KV head is formed from its group of the model's (a
    /// low-rank projection instead of the mean; queries and attention outputs mapped to match,
    /// KVHeadProjection.swift); nil = the mean. Its stored head count is `storedKVHeads`.
    public var kvHeadProjection: KVHeadProjection?
    /// Loki: an orthonormal basis P [d, d] (row-major) per (layer, KV head) in which keys are stored
    /// (the cache stores k P and multiplies queries by P, so q.k is unchanged); nil = the identity.
    public var keyBasis: ((_ layer: Int, _ head: Int) -> [Float]?)?
    /// StreamingLLM's variant: stored keys re-rotated to cache-relative positions after evictions.
    public var positionShift: Bool
    /// The policy keeps data derived from the stored keys (Quest's page bounds, Loki's low-rank rows).
    public var mirrorsKeys: Bool
    /// The policy narrows the tokens decode reads (selection policies).
    public var selects: Bool
    /// The policy chooses the keys of each query row itself (`CachePolicy.selectsRows`): how to
    /// configure it so that it does not (said when it meets another selection policy).
    public var selectsRows: String?
    /// Some layers read other layers' stores (cross-layer sharing).
    public var sharesLayers: Bool

    public init(owner: String = "", quantization: QuantizationSpec? = nil, layerMerge: LayerMergeSpec? = nil,
                storedKVHeads: Int? = nil, kvHeadProjection: KVHeadProjection? = nil, keyBasis: ((_ layer: Int, _ head: Int) -> [Float]?)? = nil,
                positionShift: Bool = false, mirrorsKeys: Bool = false, selects: Bool = false,
                selectsRows: String? = nil, sharesLayers: Bool = false) {
        self.owner = owner; self.quantization = quantization; self.layerMerge = layerMerge
        self.storedKVHeads = storedKVHeads ?? kvHeadProjection?.storedKVHeads; self.kvHeadProjection = kvHeadProjection
        self.keyBasis = keyBasis; self.positionShift = positionShift
        self.mirrorsKeys = mirrorsKeys; self.selects = selects; self.selectsRows = selectsRows; self.sharesLayers = sharesLayers
    }

    /// KV heads the cache stores for a model with `modelKVHeads` (fewer under head pooling).
    public func kvHeads(model modelKVHeads: Int) -> Int { storedKVHeads.map { min($0, modelKVHeads) } ?? modelKVHeads }

    /// The layout of policies applied together, or the first conflict between two of them.
    public static func combine(_ parts: [StorageLayout]) throws -> StorageLayout {
        for rule in rules {
            for (i, a) in parts.enumerated() {
                for (j, b) in parts.enumerated() where i != j {
                    if let message = rule(a, b, i < j) { throw LayoutConflict(message: message) }
                }
            }
        }
        var out = StorageLayout(owner: parts.map(\.owner).joined(separator: "+"))
        for p in parts {
            out.quantization = out.quantization ?? p.quantization
            out.layerMerge = out.layerMerge ?? p.layerMerge
            out.storedKVHeads = out.storedKVHeads ?? p.storedKVHeads
            out.kvHeadProjection = out.kvHeadProjection ?? p.kvHeadProjection
            out.keyBasis = out.keyBasis ?? p.keyBasis
            out.positionShift = out.positionShift || p.positionShift
            out.mirrorsKeys = out.mirrorsKeys || p.mirrorsKeys
            out.selects = out.selects || p.selects
            out.selectsRows = out.selectsRows ?? p.selectsRows
            out.sharesLayers = out.sharesLayers || p.sharesLayers
        }
        return out
    }

    /// Each rule looks at an ordered pair (a, b) (`first`: a comes before b) and says what is wrong.
    static let rules: [(StorageLayout, StorageLayout, _ first: Bool) -> String?] = [
        { a, b, _ in
            guard a.positionShift, b.quantization != nil || b.layerMerge != nil || b.mirrorsKeys else { return nil }
            return "\(a.owner) with position_shift re-rotates stored keys; it does not stack with \(b.owner) (codes, merged or mirrored keys)"
        },
        { a, b, _ in
            guard let hint = a.selectsRows, b.selects else { return nil }
            return "\(a.owner) chooses the keys of each query row itself; it does not stack with another selection policy (\(b.owner)): \(hint)"
        },
        { a, b, _ in
            guard a.keyBasis != nil, b.storedKVHeads != nil else { return nil }
            return "\(a.owner) stores keys in a basis fitted per KV head of the model; it does not stack with \(b.owner) (pooled KV heads)"
        },
        { a, b, _ in
            guard a.kvHeadProjection != nil, b.sharesLayers else { return nil }
            return "\(a.owner) projects each layer's own KV heads; it does not stack with \(b.owner) (layers reading other layers' stores)"
        },
        { a, b, _ in
            guard a.layerMerge != nil, b.quantization != nil || b.sharesLayers || b.selects || b.layerMerge != nil else { return nil }
            return "\(a.owner) does not stack with \(b.owner) (it merges the stores that \(b.owner) also rewrites or mirrors)"
        },
        { a, b, first in
            guard first else { return nil }
            let both = [(a.quantization != nil && b.quantization != nil, "quantize the stored tokens"),
                        (a.storedKVHeads != nil && b.storedKVHeads != nil, "pool KV heads"),
                        (a.keyBasis != nil && b.keyBasis != nil, "store keys in their own basis"),
                        (a.sharesLayers && b.sharesLayers, "redirect layers to other layers' stores")]
            return both.first { $0.0 }.map { "\(a.owner) and \(b.owner) both \($0.1); a stack takes one of them" }
        },
    ]
}

/// Two policies of a stack that cannot share the cache's storage.
public struct LayoutConflict: LocalizedError {
    public let message: String
    public var errorDescription: String? { message }
}
