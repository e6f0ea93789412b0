import Foundation
import XCTest
import KVCacheCore
import KVModel
import KVPolicies

/// Cross-layer sharing: CLA grouping (measured bytes), stacking, and the KVSharer map search.
final class SharingTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,layers=4,std=0.15").load()
    static let prompt = (0..<80).map { ($0 * 37 + 11) % 256 }
    static let decodeTokens = [5, 77, 130, 9, 200, 31]

    /// Prefill + decode; returns all logits and the cache.
    func run(_ policy: CachePolicy, model m: LlamaModel = SharingTests.model) -> ([Float], KVCache) {
        let cache = m.makeCache(policy: policy)
        var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        for (i, t) in Self.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
        }
        return (logits, cache)
    }

    /// Bytes the stores hold, counted from the stores themselves (tokens x d x (K + V) x 4 bytes).
    func heldBytes(_ cache: KVCache) -> Int {
        cache.stores.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count * $1.headDim * MemoryLayout<Float>.stride * 2 } }
    }

    func layerBytes(_ cache: KVCache, _ l: Int) -> Int {
        cache.stores[l].reduce(0) { $0 + $1.count * $1.headDim * MemoryLayout<Float>.stride * 2 }
    }

    func testShareFactorOneIsTheFullCache() throws {
        let (full, fc) = run(FullCachePolicy())
        let (cla, cc) = run(try CrossLayerSharing(shareFactor: 1))
        XCTAssertEqual(full, cla, "share_factor 1 must reproduce the full cache's logits exactly")
        XCTAssertEqual(fc.stats.bytesStored, cc.stats.bytesStored)
    }

    func testFactorTwoHalvesTheParticipatingLayers() throws {
        let total = Self.prompt.count + Self.decodeTokens.count
        let (_, fc) = run(FullCachePolicy())
        let perLayer = layerBytes(fc, 0)
        XCTAssertEqual(perLayer, total * 2 * 16 * 4 * 2)   // tiny: 2 KV heads, d = 16

        // All 4 layers, groups {0,1}, {2,3}: layers 1 and 3 store nothing; total halves.
        let all = try CrossLayerSharing(shareFactor: 2, layers: .all)
        let (logits, ac) = run(all)
        XCTAssertEqual((0..<4).map(all.sourceLayer), [0, 0, 2, 2])
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        for l in [1, 3] { XCTAssertEqual(layerBytes(ac, l), 0, "shared layer \(l) must hold 0 bytes") }
        for l in [0, 2] { XCTAssertEqual(layerBytes(ac, l), perLayer) }
        XCTAssertEqual(ac.stats.bytesStored, fc.stats.bytesStored / 2)
        XCTAssertEqual(ac.stats.bytesStored, heldBytes(ac))
        XCTAssertEqual(ac.count(layer: 3), total, "a shared layer reads its source's tokens")

        // Upper half (layers 2, 3): layer 3 shares layer 2; a quarter saved.
        let upper = try CrossLayerSharing(shareFactor: 2, layers: .upperHalf)
        let (_, uc) = run(upper)
        XCTAssertEqual((0..<4).map(upper.sourceLayer), [0, 1, 2, 2])
        XCTAssertEqual(layerBytes(uc, 3), 0)
        XCTAssertEqual(uc.stats.bytesStored, fc.stats.bytesStored * 3 / 4)

        // From layer 1 with factor 3: {1, 2, 3} read layer 1; half the layers' bytes are a quarter each.
        let from = try CrossLayerSharing(shareFactor: 3, layers: .from(1))
        let (_, c3) = run(from)
        XCTAssertEqual((0..<4).map(from.sourceLayer), [0, 1, 1, 1])
        XCTAssertEqual(c3.stats.bytesStored, fc.stats.bytesStored / 2)
    }

    func testSharingChangesTheOutputOfAnUntrainedModel() throws {
        // The naive baseline: the model was not trained to share, so the logits move.
        let (full, _) = run(FullCachePolicy())
        let (cla, _) = run(try CrossLayerSharing(shareFactor: 2))
        XCTAssertNotEqual(full, cla)
    }

    func testStacksWithQuestAndSnapKV() throws {
        let (_, fc) = run(FullCachePolicy())
        // CLA + Quest: selection reads fewer tokens; storage is CLA's (Quest keeps everything).
        let quest = try! PolicyStack([try CrossLayerSharing(shareFactor: 2), try Quest(tokenBudget: 16, pageSize: 8, denseLayers: 0)])
        let (ql, qc) = run(quest)
        XCTAssertTrue(ql.allSatisfy(\.isFinite))
        XCTAssertEqual(qc.stats.bytesStored, heldBytes(qc))
        XCTAssertEqual(qc.stats.bytesStored, fc.stats.bytesStored / 2)
        for l in [1, 3] { XCTAssertEqual(layerBytes(qc, l), 0) }
        XCTAssertLessThan(qc.stats.decodeBytesRead, fc.stats.decodeBytesRead)

        // CLA + SnapKV: the owning layers are compressed to the budget, the shared ones hold nothing.
        let snap = try! PolicyStack([try CrossLayerSharing(shareFactor: 2), try SnapKV(budget: .tokens(32), window: 8)])
        let (sl, sc) = run(snap)
        XCTAssertTrue(sl.allSatisfy(\.isFinite))
        XCTAssertEqual(sc.stats.bytesStored, heldBytes(sc))
        for l in [1, 3] { XCTAssertEqual(layerBytes(sc, l), 0) }
        for l in [0, 2] { for h in 0..<2 { XCTAssertLessThanOrEqual(sc.stores[l][h].count, 32 + Self.decodeTokens.count) } }
        XCTAssertLessThan(sc.stats.bytesStored, fc.stats.bytesStored / 2)
    }

    /// The search on a synthetic model, driven as `kvlab calibrate kvsharer` drives it.
    static func search(threshold: Double, maxShared: Int) throws -> KVSharerMap {
        let m = model
        let ids = (0..<192).map { ($0 * 53 + 7) % 256 }
        let sequences = [Array(ids[0..<96]), Array(ids[96...])]
        return try KVSharerSearch.search(layers: m.config.layers, threshold: threshold, maxShared: maxShared, tokens: ids.count) { policy in
            let cache = m.makeCache(policy: policy)
            return sequences.map { cache.reset(); return m.forward($0, startPosition: 0, cache: cache, phase: .prefill, logits: .hidden) }
        }
    }

    func testKVSharerSearchRespectsThresholdAndMaxShared() throws {
        let L = Self.model.config.layers
        let loose = try Self.search(threshold: 0.5, maxShared: 2)
        XCTAssertEqual(loose.ranking.count, L * (L - 1) / 2)
        XCTAssertTrue(zip(loose.ranking, loose.ranking.dropFirst()).allSatisfy { $0.distance >= $1.distance }, "descending distance")
        XCTAssertTrue(loose.ranking.allSatisfy { $0.layer > $0.source })
        XCTAssertLessThanOrEqual(loose.map.count, 2)
        XCTAssertGreaterThan(loose.map.count, 0, "a loose threshold should accept something on this model")
        XCTAssertGreaterThanOrEqual(loose.similarity, loose.threshold)
        for c in loose.ranking where c.accepted { XCTAssertGreaterThan(c.similarity!, 0.5) }
        for c in loose.ranking where c.similarity != nil && !c.accepted { XCTAssertLessThanOrEqual(c.similarity!, 0.5) }
        XCTAssertTrue(loose.map.allSatisfy { $0.value < $0.key && loose.map[$0.value] == nil }, "resolved: sources do not share")

        // The accepted map's similarity, recomputed independently with the policy built from the map.
        let m = Self.model
        let ids = (0..<192).map { ($0 * 53 + 7) % 256 }
        var sims: [Double] = []
        for seq in [Array(ids[0..<96]), Array(ids[96...])] {
            let ref = m.forward(seq, startPosition: 0, cache: m.makeCache(), phase: .prefill, logits: .hidden)
            let out = m.forward(seq, startPosition: 0, cache: m.makeCache(policy: try CrossLayerSharing(map: loose.map)),
                                phase: .prefill, logits: .hidden)
            XCTAssertEqual(ref.count, seq.count * m.config.hiddenSize)
            sims.append(KVSharerSearch.cosine(ref, out))
        }
        XCTAssertEqual(sims.reduce(0, +) / 2, loose.similarity, accuracy: 1e-9)

        // A strict threshold accepts less (never more), and max_shared 0 accepts nothing.
        let strict = try Self.search(threshold: 0.99, maxShared: 3)
        XCTAssertTrue(strict.map.isEmpty || strict.similarity > 0.99)
        for c in strict.ranking where c.accepted { XCTAssertGreaterThan(c.similarity!, 0.99) }
        XCTAssertEqual(try Self.search(threshold: 0.5, maxShared: 0).map, [:])
    }

    func testKVSharerMapRoundTripsThroughItsFile() throws {
        let found = try Self.search(threshold: 0.5, maxShared: 2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvsharer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var withAttrs = found
        withAttrs.attributes = ["model": "synthetic:tiny,layers=4"]
        for name in ["map.json", "map.h5"] {
            let path = dir.appendingPathComponent(name).path
            try withAttrs.save(to: path)
            let back = try KVSharerMap.load(path)
            XCTAssertEqual(back, withAttrs, name)
            // The policy built from the file shares what the map says.
            let policy = try PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .all, map: path)).make()
            let (_, cache) = run(policy)
            for l in 0..<4 {
                XCTAssertEqual(policy.sourceLayer(l), found.map[l] ?? l)
                if found.map[l] != nil { XCTAssertEqual(layerBytes(cache, l), 0) }
            }
        }
        // A file that is not a map is refused, naming the field.
        let bogus = dir.appendingPathComponent("bogus.json").path
        try Data("{\"format\": \"other\"}".utf8).write(to: URL(fileURLWithPath: bogus))
        XCTAssertThrowsError(try PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .all, map: bogus)).make()) { e in
            XCTAssertTrue("\(e)".contains("map_file"), "\(e)")
        }
    }

    func testSpecNamesAndFamily() throws {
        let s = PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .upperHalf, map: nil))
        XCTAssertEqual(s.kind, "cla")
        XCTAssertEqual(s.family, "sharing")
        XCTAssertEqual(s.label, "cla(share_factor=2,layers=upper_half)")
        XCTAssertTrue(PolicySpec.names.contains("cla"))
        XCTAssertNil(s.budgetForm)
        XCTAssertThrowsError(try PolicySpec(CrossLayerSharing.Config(shareFactor: 0, layers: .all, map: nil)).make())
    }
}
