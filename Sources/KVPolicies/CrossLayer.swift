// Cross-layer KV sharing, CLA style, applied without training (the "naive" baseline).
// Paper: Brandon et al., "Reducing Transformer Key-Value Cache Size with Cross-Layer Attention", arXiv 2405.12981.
// Reference: the paper's CLA2/CLA3 grouping (no public reference implementation); layer map as in KVSharer (arXiv 2410.18517).
import KVCache

/// Groups the participating layers in runs of `shareFactor`; the first layer of each group
/// computes and stores K/V, the others attend with their own queries over that store and store
/// nothing (their stores stay empty, so the measured bytes drop). On a model not trained for it
/// this is the naive baseline of the trade-off. Which layers take part is configurable: all, the
/// upper half (from L/2), or an explicit first layer; an explicit map (layer -> source, e.g. from
/// a KVSharer search) overrides the grouping.
public final class CrossLayerSharing: CachePolicy {
    public enum Layers: Hashable, Sendable {
        case all
        case upperHalf
        case from(Int)
    }
    public let shareFactor: Int
    public let layers: Layers
    public let explicitMap: [Int: Int]?
    private var map: [Int] = []

    public init(shareFactor: Int = 2, layers: Layers = .all, map: [Int: Int]? = nil) throws {
        guard shareFactor >= 1 else {
            throw PolicyError.invalidParameter(policy: "cla", field: "share_factor", message: "expected >= 1, got \(shareFactor)")
        }
        if case .from(let l) = layers, l < 0 {
            throw PolicyError.invalidParameter(policy: "cla", field: "from_layer", message: "expected >= 0, got \(l)")
        }
        if let m = map, let bad = m.first(where: { $0.value >= $0.key || $0.value < 0 }) {
            throw PolicyError.invalidParameter(policy: "cla", field: "map",
                message: "layer \(bad.key) may only reuse an earlier layer's cache, got \(bad.value)")
        }
        self.shareFactor = shareFactor; self.layers = layers; self.explicitMap = map
    }

    public var name: String {
        if let m = explicitMap { return "cla(map=\(m.sorted { $0.key < $1.key }.map { "\($0.key)->\($0.value)" }.joined(separator: ";")))" }
        return "cla(share_factor=\(shareFactor),layers=\(layers))"
    }

    public func bind(shape: CacheShape) {
        let L = shape.layers
        map = Array(0..<L)
        if let m = explicitMap {
            for (l, s) in m.sorted(by: { $0.key < $1.key }) where l < L {
                map[l] = map[s]   // a source that itself shares resolves to its own source
            }
            return
        }
        let first: Int
        switch layers { case .all: first = 0; case .upperHalf: first = L / 2; case .from(let l): first = min(l, L) }
        for l in first..<L { map[l] = first + ((l - first) / shareFactor) * shareFactor }
    }

    public func sourceLayer(_ layer: Int) -> Int { layer < map.count ? map[layer] : layer }
}
