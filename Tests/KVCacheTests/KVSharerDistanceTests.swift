import XCTest
import KVCacheCore
import KVModel
import KVPolicies

/// KVSharer's layer distance and pair ranking against the reference notebook's code
/// (fixture: Tests/KVCacheTests/Fixtures/kvsharer/expected.json from
/// scripts/fixtures/make_kvsharer_fixtures.py, which follows test_llama.ipynb cells 12-14).
final class KVSharerDistanceTests: XCTestCase {
    struct Sample: Decodable { let length: Int; let keys: [[[[Float]]]]; let values: [[[[Float]]]] }   // [L][Hkv][T][d]
    struct Fixture: Decodable {
        let layers: Int, kv_heads: Int, head_dim: Int
        let samples: [Sample]
        let reference_divisor: Int, averaged: Int
        let distances: [[Double]]          // [i, j, distance] in the reference's rank order
        let old_kvlab_ranking: [[Int]]
    }

    static let fixture = try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf:
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/kvsharer/expected.json")))

    /// Feeds the fixture's caches to the recorder (one sequence per sample) and ranks.
    func testRankingAndDistancesMatchTheReference() throws {
        let f = Self.fixture
        let rec = LayerMeanRecorder()
        rec.bind(shape: CacheShape(layers: f.layers, queryHeads: f.kv_heads, kvHeads: f.kv_heads, headDim: f.head_dim))
        for s in f.samples {
            rec.reset()                                    // a new sequence, as KVCache.reset() starts one
            for l in 0..<f.layers { for h in 0..<f.kv_heads { for t in 0..<s.length {
                s.keys[l][h][t].withUnsafeBufferPointer { k in
                    s.values[l][h][t].withUnsafeBufferPointer { v in
                        rec.add(layer: l, head: h, position: t, key: k.baseAddress!, value: v.baseAddress!)
                    }
                }
            } } }
        }
        let means = (0..<f.layers).map { rec.means(layer: $0) }
        XCTAssertEqual(rec.sequences, f.averaged)
        XCTAssertEqual(rec.skipped, f.samples.count - f.averaged, "the shorter sample is left out, as the reference's try/except")
        let ranking = KVSharerSearch.rank(keyMeans: means.map(\.keys), valueMeans: means.map(\.values), dim: f.head_dim)
        XCTAssertEqual(ranking.map { [$0.layer, $0.source] }, f.distances.map { [Int($0[0]), Int($0[1])] }, "pair ranking")
        XCTAssertNotEqual(ranking.map { [$0.layer, $0.source] }, f.old_kvlab_ranking)
        // The reference divides by all samples; KVLab by those averaged: a uniform factor.
        let scale = Double(f.averaged) / Double(f.reference_divisor)
        for (c, want) in zip(ranking, f.distances) {
            XCTAssertEqual(c.distance * scale, want[2], accuracy: 1e-5, "pair \(c.layer)->\(c.source)")
        }
    }

    /// The recorder, driven by a cache over a model, averages the stored keys position by position.
    func testRecorderAveragesStoredKeysPerPosition() throws {
        let m = try ModelSource.parse("synthetic:tiny,std=0.15,seed=3").load()
        let seqs = [(0..<24).map { ($0 * 37 + 11) % 256 }, (0..<24).map { ($0 * 11 + 5) % 256 }, (0..<10).map { $0 + 3 }]
        let rec = LayerMeanRecorder()
        let cache = m.makeCache(policy: rec)
        var stored: [[[Float]]] = []                       // per full-length sequence: layer 1's keys [T * Hkv * d]
        for s in seqs {
            cache.reset()
            _ = m.forward(s, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            if s.count == 24 {
                let hs = cache.stores[1]
                stored.append([(0..<24).flatMap { t in hs.flatMap { st in Array(UnsafeBufferPointer(start: st.keys + t * st.headDim, count: st.headDim)) } }])
            }
        }
        let mean = rec.means(layer: 1).keys
        XCTAssertEqual(rec.sequences, 2); XCTAssertEqual(rec.skipped, 1); XCTAssertEqual(rec.positions, 24)
        XCTAssertEqual(mean.count, stored[0][0].count)
        for i in mean.indices { XCTAssertEqual(mean[i], (Double(stored[0][0][i]) + Double(stored[1][0][i])) / 2, accuracy: 1e-9) }
    }
}
