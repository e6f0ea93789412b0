// Cross-layer KV sharing, CLA style, applied without training (the "naive" baseline).
// Paper: Brandon et al., "Reducing Transformer Key-Value Cache Size with Cross-Layer Attention", arXiv 2405.12981.
// Reference: the paper's CLA2/CLA3 grouping (no public reference implementation); layer map as in KVSharer (arXiv 2410.18517).
import KVCacheCore

/// Groups the participating layers in runs of `shareFactor`; the first layer of each group
/// computes and stores K/V, the others attend with their own queries over that store and store
/// nothing (their stores stay empty, so the measured bytes drop). On a model not trained for it
/// this is the naive baseline of the trade-off. Which layers take part is configurable: all, the
/// upper half (from L/2), or an explicit first layer; an explicit map (layer -> source, e.g. from
/// a KVSharer search) overrides the grouping.
public final class CrossLayerSharing: CachePolicy, ConfiguredPolicy {
    public enum Layers: Hashable, Sendable {
        case all
        case upperHalf
        case from(Int)
        /// As configs write it: all, upper_half, or the first layer.
        var text: String {
            switch self { case .all: return "all"; case .upperHalf: return "upper_half"; case .from(let n): return "\(n)" }
        }
    }
    public struct Config: PolicyConfig {
        public var shareFactor: Int
        public var layers: Layers
        /// A `kvlab calibrate kvsharer` map file; it sets which layers share (shareFactor and layers unused).
        public var map: String?
        public init(shareFactor: Int = 2, layers: Layers = .all, map: String? = nil) {
            self.shareFactor = shareFactor; self.layers = layers; self.map = map
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "cla", family: .sharing,
            summary: "layers in groups of share_factor read the first layer's store and store nothing (the naive, untrained baseline), or a KVSharer map ([sharing.md](sharing.md))",
            defaults: Config(),
            parameters: [
                PolicyParameter(keys: ["share_factor"], type: "integer", help: "layers per group (the first stores)",
                                read: { c, p in if let v = p["share_factor"] { c.shareFactor = try v.intValue() } },
                                write: { c, _ in c.map == nil ? [("share_factor", text(c.shareFactor))] : [] },
                                check: { c, policy in try Bound<Int>.atLeast(1).check("share_factor", c.shareFactor, policy: policy) }),
                PolicyParameter(keys: ["layers"], type: "all | upper_half | first layer", help: "which layers share",
                                read: { c, p in
                                    guard let l = p["layers"] else { return }
                                    if let n = try? l.intValue() {
                                        guard n >= 0 else { throw l.fail("expected all, upper_half or a first layer >= 0, got \(n)") }
                                        c.layers = .from(n)
                                        return
                                    }
                                    switch try l.stringValue() {
                                    case "all": c.layers = .all
                                    case "upper_half": c.layers = .upperHalf
                                    case let v: throw l.fail("expected all, upper_half or a first layer (an integer), got '\(v)'")
                                    }
                                },
                                write: { c, _ in c.map == nil ? [("layers", c.layers.text)] : [] }),
                PolicyParameter(keys: ["map_file"], type: "string", help: "a `kvlab calibrate kvsharer` map instead of share_factor and layers",
                                defaultText: "none",
                                read: { c, p in
                                    guard let m = p["map_file"] else { return }
                                    let given = ["share_factor", "layers"].filter { p[$0] != nil }
                                    if !given.isEmpty { throw p.error("map_file sets which layers share; drop \(given.joined(separator: " and "))") }
                                    c.map = try m.stringValue()   // relative to the current directory
                                },
                                write: { c, _ in c.map.map { [("map_file", $0)] } ?? [] }),
            ],
            sample: "share_factor: 2",
            examples: { n, _ in [Config(shareFactor: n == nil ? 1 : 2)] })
        public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name, sharesLayers: true) }
        /// The layers below the first one that reads another layer's store prefill densely.
        public var prefillSharing: PrefillSharing { .leadingLayers }
        public func make() throws -> CachePolicy {
            guard let path = map else { return try CrossLayerSharing(self) }
            return try CrossLayerSharing(self, map: KVSharerMap.loadCached(path).map)
        }
    }

    public let config: Config
    public var shareFactor: Int { config.shareFactor }
    public var layers: Layers { config.layers }
    public let explicitMap: [Int: Int]?
    private var map: [Int] = []

    /// `map` (layer -> source, e.g. a KVSharer search's) overrides the config's grouping.
    public init(_ config: Config, map: [Int: Int]? = nil) throws {
        try config.validate()
        if case .from(let l) = config.layers, l < 0 {
            throw PolicyError.invalidParameter(policy: Config.descriptor.name, field: "from_layer", message: "expected >= 0, got \(l)")
        }
        if let m = map, let bad = m.first(where: { $0.value >= $0.key || $0.value < 0 }) {
            throw PolicyError.invalidParameter(policy: Config.descriptor.name, field: "map",
                message: "layer \(bad.key) may only reuse an earlier layer's cache, got \(bad.value)")
        }
        self.config = config; self.explicitMap = map
    }

    public convenience init(shareFactor: Int = Config.descriptor.defaults.shareFactor, layers: Layers = Config.descriptor.defaults.layers,
                            map: [Int: Int]? = nil) throws {
        try self.init(Config(shareFactor: shareFactor, layers: layers), map: map)
    }

    public var name: String {
        guard let m = explicitMap, config.map == nil else { return config.label() }
        return PolicyDescriptor<Config>.label(Config.descriptor.name, [("map", m.sorted { $0.key < $1.key }.map { "\($0.key)->\($0.value)" }.joined(separator: ";"))])
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
