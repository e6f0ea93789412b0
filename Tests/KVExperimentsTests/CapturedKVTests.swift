import Foundation
import XCTest
import KVCacheCore
import KVModel
@testable import KVExperiments

/// `CapturedKV` (what `kvlab bench attention --model` fills its caches with) against the cache of
/// ordinary prefills: the prefix K/V are the full cache's rows after a prefill of `context`
/// tokens, and each decode row's query is the one a shorter, separate prefill ends with.
final class CapturedKVTests: XCTestCase {
    func testCaptureMatchesIndependentPrefills() throws {
        let m = try ModelSource.parse("synthetic:tiny,layers=2,std=0.3,seed=9").load()
        var s: UInt64 = 3
        let ids = (0..<40).map { _ -> Int in s = s &* 6364136223846793005 &+ 1442695040888963407; return Int(s >> 33) % 256 }
        let context = 36, steps = 4
        let c = CapturedKV.capture(model: m, ids: ids, context: context)
        XCTAssertEqual(c.steps, steps)
        let L = c.shape.layers, hkv = c.shape.kvHeads, d = c.shape.headDim, width = hkv * d, qWidth = c.shape.queryHeads * d

        // Prefix: the stores of a plain full-cache prefill of the first `context` tokens (causal: the same rows).
        let full = m.makeCache(kvDType: .f32)
        _ = m.forward(Array(ids.prefix(context)), startPosition: 0, cache: full, phase: .prefill, logits: .none)
        for l in 0..<L { for h in 0..<hkv {
            let st = full.stores[l][h]
            XCTAssertEqual(st.count, context)
            for t in [0, 17, context - 1] { for i in [0, d - 1] {
                let base = l * context * width * 2
                XCTAssertEqual(c.prefix[base + t * width + h * d + i], st.keys[t * d + i], accuracy: 1e-5, "key l\(l) h\(h) t\(t)")
                XCTAssertEqual(c.prefix[base + context * width + t * width + h * d + i], st.values[t * d + i], accuracy: 1e-5, "value l\(l) h\(h) t\(t)")
            } }
        } }
        // Decode rows: step s's query is the last query of a prefill of context + s + 1 tokens, its key the last key.
        for step in [0, steps - 1] {
            let rec = KVCaptureRecorder(window: 1)
            let cache = m.makeCache(policy: rec, kvDType: .f32)
            _ = m.forward(Array(ids.prefix(context + step + 1)), startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            for l in 0..<L {
                let o = step * L + l
                for i in stride(from: 0, to: qWidth, by: 7) {
                    XCTAssertEqual(c.queries[o * qWidth + i], rec.queries[l][i], accuracy: 1e-4, "query step \(step) layer \(l) [\(i)]")
                }
                for i in 0..<width {
                    XCTAssertEqual(c.keys[o * width + i], rec.keys[l][(context + step) * width + i], accuracy: 1e-4, "key step \(step) layer \(l)")
                    XCTAssertEqual(c.values[o * width + i], rec.values[l][(context + step) * width + i], accuracy: 1e-4)
                }
            }
        }
        XCTAssertNotEqual(c.queries[0], c.queries[(steps - 1) * L * qWidth], "decode steps get different queries")
    }
}
