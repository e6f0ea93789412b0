// KVSharer: a calibrated cross-layer KV sharing map (layer i reuses layer j's cache).
// Paper: Yang et al., "KVSharer: Efficient Inference via Layer-Wise Dissimilar KV Cache Sharing", arXiv 2410.18517.
// Reference: github.com/yangyifei729/KVSharer (test_llama.ipynb: per-layer KV caches averaged over calibration
// samples per position, pairs (i > j) ranked by descending distance (L2 over the feature dimension, mean over
// heads and positions; KVSharerDistance.swift), greedy acceptance while the last hidden state's cosine
// similarity to the unshared model (flattened per sample, averaged over samples) exceeds THRESHOLD,
// skipping a pair whose i is already shared, chains resolved by `re_map`, stop at SHARE_LAYERS).
import Foundation
import KVCacheCore
import KVHDF5

/// The result of a KVSharer search: which layers reuse which layer's cache, and how it was found.
/// Use it with `CrossLayerSharing(map: result.map)` or `policy: cla, map_file: FILE`.
public struct KVSharerMap: Sendable, Equatable {
    /// One ranked layer pair (i > j): "layer i reuses layer j's cache" and what the search made of it.
    public struct Candidate: Sendable, Equatable {
        public var layer: Int            // i, the layer that would store nothing
        public var source: Int           // j, the layer whose cache it would read
        public var distance: Double      // (dist(K̄_i, K̄_j) + dist(V̄_i, V̄_j)) / 2, dist = mean over (head, position) of the L2 norm
        /// Mean cosine similarity of the final hidden states with this pair added (nil: not tried).
        public var similarity: Double?
        public var accepted: Bool
        public init(layer: Int, source: Int, distance: Double, similarity: Double? = nil, accepted: Bool = false) {
            self.layer = layer; self.source = source; self.distance = distance; self.similarity = similarity; self.accepted = accepted
        }
    }

    public var layers: Int
    /// Shared layer -> the layer whose store it reads (resolved: sources never share themselves).
    public var map: [Int: Int]
    public var threshold: Double
    public var maxShared: Int
    /// Similarity of the accepted map (1 when nothing is shared).
    public var similarity: Double
    /// Every pair in descending distance order (the search stops early: later pairs stay untried).
    public var ranking: [Candidate]
    /// Calibration tokens the search ran on.
    public var tokens: Int
    /// Free-form provenance (model, token source, ...).
    public var attributes: [String: String]

    public init(layers: Int, map: [Int: Int], threshold: Double, maxShared: Int, similarity: Double,
                ranking: [Candidate], tokens: Int, attributes: [String: String] = [:]) {
        self.layers = layers; self.map = map; self.threshold = threshold; self.maxShared = maxShared
        self.similarity = similarity; self.ranking = ranking; self.tokens = tokens; self.attributes = attributes
    }

    /// Source layer of every layer [L] (a layer that keeps its own cache maps to itself).
    public var sources: [Int] { (0..<layers).map { map[$0] ?? $0 } }

    /// "3->1, 5->0" (sorted by layer), or "none".
    public var summary: String {
        map.isEmpty ? "none" : map.sorted { $0.key < $1.key }.map { "\($0.key)->\($0.value)" }.joined(separator: ", ")
    }

    // MARK: Files

    static let format = "kvlab-kvsharer-map"

    /// Writes the map (atomically): JSON for a `.json` path, otherwise HDF5 (datasets `sources`
    /// [L] int64, `ranking` [P, 2] int64 (layer, source), `distances` and `similarities` [P]
    /// float64 (NaN: not tried), `accepted` [P] uint8; attributes format, version, threshold,
    /// max_shared, similarity, tokens and the provenance attributes).
    public func save(to path: String) throws {
        if path.lowercased().hasSuffix(".json") {
            let file = JSONFile(format: Self.format, version: 1, layers: layers,
                                map: Dictionary(uniqueKeysWithValues: map.map { ("\($0.key)", $0.value) }),
                                threshold: threshold, max_shared: maxShared, similarity: similarity, tokens: tokens,
                                attributes: attributes,
                                ranking: ranking.map { .init(layer: $0.layer, source: $0.source, distance: $0.distance,
                                                              similarity: $0.similarity, accepted: $0.accepted) })
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            try enc.encode(file).write(to: URL(fileURLWithPath: path), options: .atomic)
            return
        }
        try H5File.writeAtomically(to: path) { f in
            let P = ranking.count
            try f.root.write("sources", int64s: sources.map(Int64.init), shape: [layers])
            try f.root.write("ranking", int64s: ranking.flatMap { [Int64($0.layer), Int64($0.source)] }, shape: [P, 2])
            try f.root.write("distances", doubles: ranking.map(\.distance), shape: [P])
            try f.root.write("similarities", doubles: ranking.map { $0.similarity ?? .nan }, shape: [P])
            try f.root.write("accepted", uint8s: ranking.map { $0.accepted ? 1 : 0 }, shape: [P])
            try f.root.setAttribute("format", Self.format)
            try f.root.setAttribute("version", 1)
            try f.root.setAttribute("threshold", threshold)
            try f.root.setAttribute("max_shared", maxShared)
            try f.root.setAttribute("similarity", similarity)
            try f.root.setAttribute("tokens", tokens)
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try f.root.setAttribute(k, v) }
        }
    }

    /// Reads a file written by `save` (JSON or HDF5, by content); errors name the file and field.
    public static func load(_ path: String) throws -> KVSharerMap {
        func bad(_ m: String) -> PolicyError { .invalidParameter(policy: CrossLayerSharing.Config.descriptor.name, field: "map_file", message: "\(path): \(m)") }
        guard FileManager.default.fileExists(atPath: path) else { throw bad("no such file") }
        let result: KVSharerMap
        if H5File.isHDF5(path) {
            let f = try openPolicyFile(path, format: format, what: "KVSharer map", writer: "kvlab calibrate kvsharer", bad: bad)
            defer { try? f.close() }
            let root = f.root
            let (src, ss) = try root.readInt64s("sources")
            let (pairs, ps) = try root.readInt64s("ranking")
            let (dist, _) = try root.readDoubles("distances")
            let (sims, _) = try root.readDoubles("similarities")
            let (acc, _) = try root.readUInt8s("accepted")
            guard ss.count == 1, ps.count == 2, ps[1] == 2, dist.count == ps[0], sims.count == ps[0], acc.count == ps[0] else {
                throw bad("expected sources [L], ranking [P, 2], distances/similarities/accepted [P]; got sources \(ss), ranking \(ps)")
            }
            var map: [Int: Int] = [:]
            for (l, s) in src.enumerated() where Int(s) != l { map[l] = Int(s) }
            let ranking = (0..<ps[0]).map { p in
                Candidate(layer: Int(pairs[2 * p]), source: Int(pairs[2 * p + 1]), distance: dist[p],
                          similarity: sims[p].isNaN ? nil : sims[p], accepted: acc[p] != 0)
            }
            var attrs: [String: String] = [:]
            let fixed = ["format", "version", "threshold", "max_shared", "similarity", "tokens"]
            for name in try root.attributeNames() where !fixed.contains(name) {
                if let s = try? root.stringAttribute(name) { attrs[name] = s }
            }
            result = KVSharerMap(layers: ss[0], map: map, threshold: try root.doubleAttribute("threshold"),
                                 maxShared: try root.intAttribute("max_shared"), similarity: try root.doubleAttribute("similarity"),
                                 ranking: ranking, tokens: try root.intAttribute("tokens"), attributes: attrs)
        } else {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            if let probe = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any], probe["format"] as? String != format {
                throw bad("not a KVSharer map (format != \(format)); write one with `kvlab calibrate kvsharer`")
            }
            let file: JSONFile
            do { file = try JSONDecoder().decode(JSONFile.self, from: data) } catch {
                throw bad("not a KVSharer map file: \(error)")
            }
            var map: [Int: Int] = [:]
            for (k, v) in file.map {
                guard let l = Int(k) else { throw bad("map: expected \"layer\": source, got \"\(k)\"") }
                map[l] = v
            }
            result = KVSharerMap(layers: file.layers, map: map, threshold: file.threshold, maxShared: file.max_shared,
                                 similarity: file.similarity,
                                 ranking: file.ranking.map { Candidate(layer: $0.layer, source: $0.source, distance: $0.distance,
                                                                       similarity: $0.similarity, accepted: $0.accepted) },
                                 tokens: file.tokens, attributes: file.attributes)
        }
        if let b = result.map.first(where: { $0.value < 0 || $0.value >= $0.key || $0.key >= result.layers }) {
            throw bad("layer \(b.key) -> \(b.value): a layer may only reuse an earlier layer's cache (of \(result.layers) layers)")
        }
        return result
    }

    /// The JSON layout (keys as written).
    private struct JSONFile: Codable {
        struct Pair: Codable { var layer: Int; var source: Int; var distance: Double; var similarity: Double?; var accepted: Bool }
        var format: String
        var version: Int
        var layers: Int
        var map: [String: Int]
        var threshold: Double
        var max_shared: Int
        var similarity: Double
        var tokens: Int
        var attributes: [String: String]
        var ranking: [Pair]
    }

    private static let files = PolicyFileCache<KVSharerMap>()

    /// `load`, remembered per path and modification date (a sweep builds the policy per sample);
    /// errors name the policy's field.
    public static func loadCached(_ path: String) throws -> KVSharerMap {
        try files.load(path, policy: CrossLayerSharing.Config.descriptor.name, field: "map_file", read: load)
    }
}

/// KVSharer's strategy search.
public enum KVSharerSearch {
    /// The greedy search over a ranking: tries "layer i reuses layer j" in order, skipping a
    /// pair whose i already shares (as the reference); j's own source is used when j shares, and
    /// layers that read i follow it to its new source (the reference's `re_map`). A pair is kept
    /// when `similarity(map)` (the candidate map, resolved) exceeds `threshold`; the search
    /// stops once `maxShared` layers share.
    public static func greedy(layers: Int, ranking: [KVSharerMap.Candidate], threshold: Double, maxShared: Int,
                              similarity: ([Int: Int]) throws -> Double) rethrows
        -> (map: [Int: Int], similarity: Double, ranking: [KVSharerMap.Candidate]) {
        var ranking = ranking
        var sources = Array(0..<layers)
        var shared = Set<Int>(), accepted = 1.0
        for p in ranking.indices {
            if shared.count >= maxShared { break }
            let i = ranking[p].layer, j = ranking[p].source
            if shared.contains(i) { continue }
            var trial = sources
            trial[i] = j
            for l in 0..<layers where trial[l] != l { trial[l] = trial[trial[l]] }   // re_map (sources precede their sharers)
            let m = Dictionary(uniqueKeysWithValues: (0..<layers).filter { trial[$0] != $0 }.map { ($0, trial[$0]) })
            let s = try similarity(m)
            ranking[p].similarity = s
            if s > threshold {
                ranking[p].accepted = true
                sources = trial; shared.insert(i); accepted = s
            }
        }
        let map = Dictionary(uniqueKeysWithValues: (0..<layers).filter { sources[$0] != $0 }.map { ($0, sources[$0]) })
        return (map, accepted, ranking)
    }

    /// Cosine similarity of two flattened vectors (1 when both are zero).
    public static func cosine(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "cosine: lengths differ")
        var ab = 0.0, aa = 0.0, bb = 0.0
        for i in a.indices { let x = Double(a[i]), y = Double(b[i]); ab += x * y; aa += x * x; bb += y * y }
        if aa == 0 && bb == 0 { return 1 }
        return ab / max((aa * bb).squareRoot(), 1e-300)
    }

    /// The whole search. `forward(policy)` runs the model over the calibration sequences with a
    /// fresh cache managed by `policy` (`cache.reset()` between sequences) and returns each
    /// sequence's final (normed) hidden states [T, D]. The first run (a `LayerMeanRecorder`, which
    /// keeps everything) gives both the per-position K/V means and the unshared reference; each
    /// candidate map then runs once, its similarity being the per-sequence cosine of the flattened
    /// hidden states, averaged. The map's attributes record how many sequences (and positions) the
    /// distances averaged (`distance_sequences`, `distance_positions`, `distance_skipped`).
    public static func search(layers: Int, threshold: Double, maxShared: Int, tokens: Int = 0,
                              attributes: [String: String] = [:],
                              forward: (CachePolicy) throws -> [[Float]]) throws -> KVSharerMap {
        guard maxShared >= 0 else {
            throw PolicyError.invalidParameter(policy: "kvsharer", field: "max_shared", message: "expected >= 0, got \(maxShared)")
        }
        guard threshold.isFinite && threshold <= 1 else {
            throw PolicyError.invalidParameter(policy: "kvsharer", field: "threshold", message: "expected a cosine similarity <= 1, got \(threshold)")
        }
        let recorder = LayerMeanRecorder()
        let reference = try forward(recorder)
        guard recorder.layers == layers else {
            throw PolicyError.invalidParameter(policy: "kvsharer", field: "layers", message: "model has \(recorder.layers) layers, expected \(layers)")
        }
        let means = (0..<layers).map { recorder.means(layer: $0) }
        let ranking = rank(keyMeans: means.map(\.keys), valueMeans: means.map(\.values), dim: recorder.shape?.headDim ?? 1)
        let found = try greedy(layers: layers, ranking: ranking, threshold: threshold, maxShared: maxShared) { map in
            let out = try forward(try CrossLayerSharing(map: map))
            let sims = zip(reference, out).map { cosine($0.0, $0.1) }
            return sims.reduce(0, +) / Double(max(sims.count, 1))
        }
        var attrs = attributes
        attrs["distance"] = "mean over (KV head, position) of the L2 norm of per-position calibration means (reference test_llama.ipynb)"
        attrs["distance_sequences"] = "\(recorder.sequences)"
        attrs["distance_positions"] = "\(recorder.positions ?? 0)"
        attrs["distance_skipped"] = "\(recorder.skipped)"
        return KVSharerMap(layers: layers, map: found.map, threshold: threshold, maxShared: maxShared,
                           similarity: found.similarity, ranking: found.ranking, tokens: tokens, attributes: attrs)
    }
}
