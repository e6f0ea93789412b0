import XCTest
import KVCacheCore
import KVModel
import KVPolicies

/// Head pooling in the cache equals the GQA paper's weight conversion (mean-pooled K/V
/// projection blocks), stores fewer heads, and is the identity at the model's head count.
final class HeadPoolingTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,kv_heads=4,heads=8,hidden=64,std=0.15,seed=5,qkv_bias=1").load()
    static let prompt = (0..<40).map { ($0 * 29 + 7) % 256 }

    func logits(_ m: LlamaModel, _ policy: CachePolicy) -> (logits: [Float], cache: KVCache) {
        let cache = m.makeCache(policy: policy)
        var out = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill, logits: .all)
        out += m.forward([3], startPosition: Self.prompt.count, cache: cache, phase: .decode)
        return (out, cache)
    }

    /// The GQA conversion applied to the weights: each new K/V head block (and bias) is the mean of its group's.
    func weightPooled(_ m: LlamaModel, kvHeads: Int) throws -> LlamaModel {
        let c = m.config, d = c.headDim, D = c.hiddenSize, r = c.kvHeads / kvHeads
        func pool(_ m: WeightMatrix) -> WeightMatrix {
            WeightMatrix(floats: pool(m.dequantized(), cols: m.cols), rows: kvHeads * d, cols: m.cols)
        }
        func pool(_ w: [Float], cols: Int) -> [Float] {
            var out = [Float](repeating: 0, count: kvHeads * d * cols)
            for p in 0..<kvHeads { for member in 0..<r { for row in 0..<d { for col in 0..<cols {
                out[(p * d + row) * cols + col] += w[(((p * r + member) * d) + row) * cols + col] / Float(r)
            } } } }
            return out
        }
        var w = m.weights
        for l in w.layers.indices {
            w.layers[l].wk = pool(w.layers[l].wk)
            w.layers[l].wv = pool(w.layers[l].wv)
            w.layers[l].bk = w.layers[l].bk.map { pool($0, cols: 1) }
            w.layers[l].bv = w.layers[l].bv.map { pool($0, cols: 1) }
        }
        var config = c
        config.kvHeads = kvHeads
        return LlamaModel(config: config, weights: w)
    }

    func testPoolingToTheModelsHeadCountIsExact() throws {
        let full = logits(Self.model, FullCachePolicy()).logits
        XCTAssertEqual(logits(Self.model, try HeadPooling(kvHeads: 4)).logits, full)
    }

    func testPoolingEqualsWeightConversionAndStoresFewerHeads() throws {
        let full = logits(Self.model, FullCachePolicy())
        for target in [2, 1] {
            let pooled = logits(Self.model, try HeadPooling(kvHeads: target))
            let converted = logits(try weightPooled(Self.model, kvHeads: target), FullCachePolicy()).logits
            let diff = zip(pooled.logits, converted).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(diff, 1e-4, "pooling to \(target) heads differs from the GQA weight conversion")
            XCTAssertNotEqual(pooled.logits, full.logits, "pooling changed nothing")
            XCTAssertEqual(pooled.cache.stores[0].count, target)
            XCTAssertEqual(pooled.cache.stats.bytesStored * 4 / target, full.cache.stats.bytesStored,
                           "measured bytes must shrink by the pooling factor")
        }
    }

    func testPoolingStacksWithEviction() throws {
        let stack = try! PolicyStack([try HeadPooling(kvHeads: 2), try SnapKV(budget: .tokens(16), window: 8)])
        let r = logits(Self.model, stack)
        for layer in r.cache.stores {
            XCTAssertEqual(layer.count, 2)
            for s in layer { XCTAssertLessThanOrEqual(s.count, 17) }   // 16 after prefill + the decode token
        }
        let held = r.cache.stores.flatMap { $0 }.reduce(0) { $0 + $1.count * $1.headDim * 8 }
        XCTAssertEqual(r.cache.stats.bytesStored, held)
    }
}
