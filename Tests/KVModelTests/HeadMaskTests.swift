import XCTest
import KVCacheCore
import KVModel

/// Head ablation really switches heads off: an empty mask changes nothing, a mask changes the
/// logits, and each mode equals a manually edited weight copy (uniform = the head's W_q rows and
/// bias zeroed, as the reference zeroes the query; zero = the head's W_o columns zeroed).
final class HeadMaskTests: XCTestCase {
    static let prompt = (0..<30).map { ($0 * 13 + 5) % 256 }
    static let masked: [(layer: Int, head: Int)] = [(0, 1), (1, 3), (1, 6)]

    func model() throws -> LlamaModel {
        try ModelSource.parse("synthetic:tiny,kv_heads=2,heads=8,hidden=64,std=0.2,seed=21,qkv_bias=1").load()
    }

    /// Prefill logits of every row, then two decode steps.
    func run(_ m: LlamaModel) -> (prefill: [Float], decode: [Float]) {
        let cache = m.makeCache()
        let p = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill, logits: .all)
        var d = m.forward([7], startPosition: Self.prompt.count, cache: cache, phase: .decode)
        d += m.forward([42], startPosition: Self.prompt.count + 1, cache: cache, phase: .decode)
        return (p, d)
    }

    func mask(_ m: LlamaModel, _ pairs: [(layer: Int, head: Int)], _ mode: HeadMask.Mode, _ phases: HeadMask.Phases) throws -> HeadMask {
        try HeadMask(pairs: pairs, layers: m.config.layers, queryHeads: m.config.heads, mode: mode, phases: phases)
    }

    func testEmptyMaskChangesNothingAndAMaskChangesTheLogits() throws {
        let m = try model()
        let base = run(m)
        m.headMask = try mask(m, [], .uniform, .all)
        XCTAssertEqual(m.headMask?.count, 0)
        let empty = run(m)
        XCTAssertEqual(empty.prefill, base.prefill)
        XCTAssertEqual(empty.decode, base.decode)
        for mode in HeadMask.Mode.allCases {
            m.headMask = try mask(m, Self.masked, mode, .decode)
            let r = run(m)
            XCTAssertEqual(r.prefill, base.prefill, "\(mode): decode-only mask must leave the prefill alone")
            XCTAssertGreaterThan(zip(r.decode, base.decode).map { abs($0 - $1) }.max()!, 1e-4, "\(mode)")
        }
    }

    func testUniformModeEqualsZeroedQueryWeights() throws {
        let m = try model()
        m.headMask = try mask(m, Self.masked, .uniform, .all)
        let masked = run(m)
        let copy = try model()
        var w = copy.weights
        let d = copy.config.headDim, D = copy.config.hiddenSize
        for (l, h) in Self.masked {
            for row in (h * d)..<((h + 1) * d) {
                for x in 0..<D { w.layers[l].wq[row * D + x] = 0 }
                w.layers[l].bq?[row] = 0
            }
        }
        let edited = run(LlamaModel(config: copy.config, weights: w))
        XCTAssertEqual(masked.prefill, edited.prefill)
        XCTAssertEqual(masked.decode, edited.decode)
    }

    func testZeroModeEqualsZeroedOutputColumns() throws {
        let m = try model()
        m.headMask = try mask(m, Self.masked, .zero, .all)
        let masked = run(m)
        let copy = try model()
        var w = copy.weights
        let d = copy.config.headDim, D = copy.config.hiddenSize, width = copy.config.heads * d
        for (l, h) in Self.masked {
            for row in 0..<D { for c in (h * d)..<((h + 1) * d) { w.layers[l].wo[row * width + c] = 0 } }
        }
        let edited = run(LlamaModel(config: copy.config, weights: w))
        XCTAssertLessThan(zip(masked.prefill, edited.prefill).map { abs($0 - $1) }.max()!, 1e-5)
        XCTAssertLessThan(zip(masked.decode, edited.decode).map { abs($0 - $1) }.max()!, 1e-5)
    }

    func testHeadsOutsideTheModelAreRejected() throws {
        let m = try model()
        XCTAssertThrowsError(try mask(m, [(2, 0)], .uniform, .decode)) { XCTAssertTrue("\($0)".contains("2.0")) }
        XCTAssertThrowsError(try mask(m, [(0, 8)], .uniform, .decode))
    }
}
