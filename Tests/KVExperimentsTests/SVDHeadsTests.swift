import XCTest
import KVCacheCore
import KVExperiments
import KVModel
import KVPolicies
import KVTensor

/// SVD KV-head compression: full rank reproduces the model, the cache-side projection equals the
/// folded weights, a group that really is low-rank (RoPE-commuting) compresses exactly where mean
/// pooling does not, and the stored bytes are the converted head count's.
final class SVDHeadsTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,kv_heads=4,heads=8,hidden=64,std=0.15,seed=5,qkv_bias=1").load()
    static let prompt = (0..<40).map { ($0 * 29 + 7) % 256 }

    func run(_ m: LlamaModel, _ policy: CachePolicy) -> (logits: [Float], cache: KVCache) {
        let cache = m.makeCache(policy: policy)
        var out = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill, logits: .all)
        for t in [3, 17, 99] { out += m.forward([t], startPosition: cache.stats.tokensSeen, cache: cache, phase: .decode) }
        return (out, cache)
    }

    func calibrate(_ m: LlamaModel, kvHeads: Int) throws -> SVDHeadsCalibration {
        try SVDHeadsCalibrator.calibrate(model: m, storedKVHeads: kvHeads, source: .random(count: 240, seed: 3), sequenceLength: 120)
    }

    static func maxRelDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        let scale = max(b.map(abs).max() ?? 1, 1e-6)
        return zip(a, b).map { abs($0 - $1) }.max()! / scale
    }

    func testFullRankReproducesTheModel() throws {
        let cal = try calibrate(Self.model, kvHeads: 4)
        // Not the identity: the value basis is a rotation and the key coefficients are phases.
        XCTAssertGreaterThan(abs(cal.valueBasis[0][0][1]), 1e-3)
        XCTAssertLessThan(cal.valueError.max()!, 1e-5)
        let full = run(Self.model, FullCachePolicy()).logits
        let svd = run(Self.model, SVDHeads(calibration: cal)).logits
        XCTAssertLessThan(Self.maxRelDiff(svd, full), 2e-5)
    }

    func testProjectionInTheCacheEqualsFoldedWeightsAndStoresFewerHeads() throws {
        for target in [2, 1] {
            let cal = try calibrate(Self.model, kvHeads: target)
            let inCache = run(Self.model, SVDHeads(calibration: cal))
            let folded = SVDHeadsCalibrator.foldedModel(Self.model, cal)
            XCTAssertEqual(folded.config.kvHeads, target)
            let weights = run(folded, FullCachePolicy())
            XCTAssertLessThan(Self.maxRelDiff(inCache.logits, weights.logits), 2e-5, "kv_heads \(target)")
            // Bytes measured from the stores: the converted head count's, i.e. the folded model's full cache.
            let tokens = Self.prompt.count + 3, c = Self.model.config
            XCTAssertEqual(inCache.cache.stats.bytesStored, c.layers * target * c.headDim * 2 * 4 * tokens)
            XCTAssertEqual(inCache.cache.stats.bytesStored, weights.cache.stats.bytesStored)
            XCTAssertEqual(inCache.cache.stats.bytesStored * (4 / target), run(Self.model, FullCachePolicy()).cache.stats.bytesStored)
            // The fit beats mean pooling on its own calibration data.
            for i in cal.valueError.indices {
                XCTAssertLessThanOrEqual(cal.valueError[i], cal.valueErrorMean[i] + 1e-6)
                XCTAssertLessThanOrEqual(cal.keyError[i], cal.keyErrorMean[i] + 1e-6)
            }
        }
    }

    /// KV head 1 of every layer is made a RoPE-commuting image of head 0 (keys: a complex factor per
    /// frequency; values: a random d x d map): the pair has rank d, so SVD compression 2 -> 1 is exact
    /// (logits unchanged) while mean pooling is not.
    func testLowRankGroupCompressesExactlyWhereMeanPoolingDoesNot() throws {
        let base = try ModelSource.parse("synthetic:tiny,kv_heads=2,heads=4,hidden=64,std=0.15,seed=9").load()
        let c = base.config, d = c.headDim, half = d / 2, D = c.hiddenSize
        var rng = SeededRandom(seed: 11)
        var w = base.weights
        for l in 0..<c.layers {
            var lw = w.layers[l]
            for j in 0..<half {
                let a = (rng.nextUniform() * 2 - 1), b = (rng.nextUniform() * 2 - 1)   // z1 = (a + ib) z0
                for x in 0..<D {
                    let zr = lw.wk[j * D + x], zi = lw.wk[(j + half) * D + x]
                    lw.wk[(d + j) * D + x] = a * zr - b * zi
                    lw.wk[(d + j + half) * D + x] = a * zi + b * zr
                }
            }
            let mix = (0..<(d * d)).map { _ in (rng.nextUniform() * 2 - 1) / Float(d).squareRoot() }
            for row in 0..<d { for x in 0..<D {
                var acc: Float = 0
                for k in 0..<d { acc += mix[row * d + k] * lw.wv[k * D + x] }
                lw.wv[(d + row) * D + x] = acc
            } }
            w.layers[l] = lw
        }
        let m = LlamaModel(config: c, weights: w)
        let cal = try calibrate(m, kvHeads: 1)
        XCTAssertLessThan(cal.keyError.max()!, 1e-5)
        XCTAssertLessThan(cal.valueError.max()!, 1e-5)
        XCTAssertGreaterThan(cal.keyErrorMean.min()!, 1e-2)
        let full = run(m, FullCachePolicy()).logits
        XCTAssertLessThan(Self.maxRelDiff(run(m, SVDHeads(calibration: cal)).logits, full), 1e-4)
        let pooled = run(m, try HeadPooling(kvHeads: 1)).logits
        XCTAssertGreaterThan(Self.maxRelDiff(pooled, full), 1e-2)
        // part = keys / values mean-pools the other cache, in the projection's terms: with both
        // halves mean-pooled that way the cache equals head_pooling.
        let keysOnly = run(m, SVDHeads(calibration: cal, part: .keys)).logits
        let valuesOnly = run(m, SVDHeads(calibration: cal, part: .values)).logits
        XCTAssertGreaterThan(Self.maxRelDiff(keysOnly, full), 1e-3)
        XCTAssertGreaterThan(Self.maxRelDiff(valuesOnly, full), 1e-3)
        let p = cal.projection
        let meanBoth = KVHeadProjection(layers: p.layers, modelKVHeads: p.modelKVHeads, storedKVHeads: 1, headDim: p.headDim,
                                        valueBasis: SVDHeads.meanValueBasis(p),
                                        keyRe: p.keyRe.map { $0.map { $0.map { _ in 1 / Float(2).squareRoot() } } },
                                        keyIm: p.keyIm.map { $0.map { $0.map { _ in 0 } } })
        XCTAssertLessThan(Self.maxRelDiff(run(m, ProjectionOnly(meanBoth)).logits, pooled), 1e-4)
    }

    /// SVD composes with eviction: a stack with SnapKV at a budget above the context equals SVD alone;
    /// at a small budget each stored head keeps the budget's tokens.
    func testStacksWithEviction() throws {
        let cal = try calibrate(Self.model, kvHeads: 2)
        let alone = run(Self.model, SVDHeads(calibration: cal)).logits
        let roomy = run(Self.model, try PolicyStack([SVDHeads(calibration: cal), try SnapKV(budget: .tokens(1000), window: 8)]))
        XCTAssertEqual(roomy.logits, alone)
        let tight = run(Self.model, try PolicyStack([SVDHeads(calibration: cal), try SnapKV(budget: .tokens(16), window: 8)]))
        XCTAssertEqual(tight.cache.stores[0].count, 2)
        XCTAssertTrue(tight.cache.stores.allSatisfy { $0.allSatisfy { $0.count <= 16 + 3 } })
        XCTAssertNotEqual(tight.logits, alone)
    }

    func testFileRoundTripAndBadInput() throws {
        let cal = try calibrate(Self.model, kvHeads: 2)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("svdheads-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/svd.h5"
        try cal.save(to: path)
        let back = try SVDHeadsCalibration.load(path)
        XCTAssertEqual(back.valueBasis, cal.valueBasis)
        XCTAssertEqual(back.keyRe, cal.keyRe)
        XCTAssertEqual(back.keyIm, cal.keyIm)
        XCTAssertEqual(back.storedKVHeads, 2)
        // Through the config path: a spec builds the policy; a model of another shape is refused with a clear error.
        let spec = PolicySpec(SVDHeads.Config(calibration: path))
        let live = try spec.make(model: Self.model.cacheShape)
        XCTAssertEqual(live.layout.kvHeads(model: 4), 2)
        XCTAssertEqual(try spec.layout.storedKVHeads, 2, "the config's layout reads the file's head count")
        let other = try ModelSource.parse("synthetic:tiny,kv_heads=2,heads=8,hidden=64").load()
        XCTAssertThrowsError(try spec.make(model: other.cacheShape)) {
            XCTAssertTrue("\($0)".contains("fitted for"), "\($0)")
        }
        XCTAssertThrowsError(try PolicySpec(SVDHeads.Config(calibration: dir + "/missing.h5")).make()) {
            XCTAssertTrue("\($0)".contains("missing.h5"), "\($0)")
        }
        // With head pooling, Loki (a basis per model KV head) or cross-layer sharing a stack is refused.
        for other in [PolicySpec(HeadPooling.Config(kvHeads: 1)), PolicySpec(CrossLayerSharing.Config())] {
            XCTAssertThrowsError(try PolicySpec.stack([spec, other]).make()) { XCTAssertTrue("\($0)".contains("svd_heads"), "\($0)") }
        }
    }
}

/// A policy that only projects KV heads (for checking the projection's mean-pooling special case).
final class ProjectionOnly: CachePolicy {
    let projection: KVHeadProjection
    init(_ p: KVHeadProjection) { projection = p }
    var name: String { "projection_only" }
    var layout: StorageLayout { StorageLayout(owner: "projection_only", kvHeadProjection: projection) }
}
