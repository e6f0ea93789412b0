import XCTest
import KVCacheCore
import KVModel
import KVTensor

/// Lockstep decoding (`LlamaModel.decodeBatch`): a sequence's logits, cache and figures are bit
/// for bit those of decoding it alone (`forward(_:phase: .decode)`), whichever sequences share its
/// steps and whatever BLAS threads run.
final class BatchDecodeTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,hidden=256,intermediate=512,std=0.15,seed=3").load()   // several weight blocks per matrix

    /// Decodes `tokens` of sequence 0 after a prompt, in lockstep with `others` other sequences
    /// (each its own prompt and tokens); returns sequence 0's logits of every step.
    /// Sequence 0's cache stores `dtype` rows (`kv_dtype`); the others are Float32.
    func decode(others: Int, threads: Int = 1, offset: Int = 0, dtype: KVDType = .f32) -> [Float] {
        BLAS.setThreads(threads)
        defer { BLAS.setThreads(1) }
        let m = Self.model
        let n = others + 1
        let caches = (0..<n).map { m.makeCache(kvDType: $0 == 0 ? dtype : .f32) }
        for (i, c) in caches.enumerated() {
            let prompt = (0..<(40 + 7 * i)).map { ($0 * 31 + 7 * i + 3) % m.config.vocabSize }
            _ = m.forward(prompt, startPosition: 0, cache: c, phase: .prefill)
        }
        var out: [Float] = []
        for step in 0..<6 {
            // Sequence 0 sits at index `offset` of the batch.
            var order = Array(1..<n); order.insert(0, at: min(offset, order.count))
            let tokens = order.map { (step * 13 + $0 * 5 + 1) % m.config.vocabSize }
            let positions = order.map { caches[$0].stats.tokensSeen }
            let logits = m.decodeBatch(tokens, positions: positions, caches: order.map { caches[$0] })
            out += logits[order.firstIndex(of: 0)!]
        }
        return out
    }

    func testASequencesLogitsDoNotDependOnItsCompanions() {
        let alone = decode(others: 0)
        XCTAssertEqual(alone.count, 6 * Self.model.config.vocabSize)
        for (others, offset, threads) in [(3, 2, 1), (18, 17, 2)] {
            let together = decode(others: others, threads: threads, offset: offset)
            XCTAssertEqual(alone.map(\.bitPattern), together.map(\.bitPattern), "\(others) others, at \(offset), \(threads) threads")
        }
    }

    /// Half-precision caches decode in lockstep beside Float32 ones as alone (and really differ from Float32).
    func testHalfPrecisionCachesDecodeInLockstepAsAlone() {
        let f32 = decode(others: 0)
        for dtype in [KVDType.f16, .bf16] {
            let alone = decode(others: 0, dtype: dtype)
            XCTAssertNotEqual(alone, f32, "\(dtype)")
            XCTAssertEqual(alone.map(\.bitPattern), decode(others: 3, offset: 1, dtype: dtype).map(\.bitPattern), "\(dtype)")
        }
    }

    func testEqualsTheSingleRowDecodeBitForBit() {
        let m = Self.model
        let a = m.makeCache(), b = m.makeCache()
        let prompt = (0..<50).map { ($0 * 17 + 5) % m.config.vocabSize }
        _ = m.forward(prompt, startPosition: 0, cache: a, phase: .prefill)
        _ = m.forward(prompt, startPosition: 0, cache: b, phase: .prefill)
        for step in 0..<5 {
            let t = (step * 29 + 2) % m.config.vocabSize
            let single = m.forward([t], startPosition: 50 + step, cache: a, phase: .decode)
            let batched = m.decodeBatch([t], positions: [50 + step], caches: [b])[0]
            XCTAssertEqual(single.map(\.bitPattern), batched.map(\.bitPattern))
            XCTAssertEqual(a.stats, b.stats)
        }
    }

    /// Each sequence's own head mask (`decodeBatchChecked`), in one batch with sequences masked
    /// otherwise or not at all: its logits and cache are those of decoding it alone with the mask.
    func testPerSequenceHeadMasksEqualDecodingEachAlone() throws {
        let m = Self.model
        let shape = (layers: m.config.layers, heads: m.config.heads)
        let masks: [HeadMask?] = [
            nil,
            try HeadMask(pairs: [(0, 1), (1, 0)], layers: shape.layers, queryHeads: shape.heads, mode: .uniform, phases: .decode),
            try HeadMask(pairs: [(1, 2)], layers: shape.layers, queryHeads: shape.heads, mode: .zero, phases: .all),
        ]
        let prompt = (0..<30).map { ($0 * 11 + 4) % m.config.vocabSize }
        let batched = masks.map { _ in m.makeCache() }, alone = masks.map { _ in m.makeCache() }
        for (i, mask) in masks.enumerated() {
            _ = try m.forwardChecked(prompt, startPosition: 0, cache: batched[i], phase: .prefill, headMask: mask)
            m.headMask = mask
            defer { m.headMask = nil }
            _ = try m.forwardChecked(prompt, startPosition: 0, cache: alone[i], phase: .prefill)
        }
        var differ = false
        for step in 0..<4 {
            let t = (step * 7 + 3) % m.config.vocabSize
            let rows = m.decodeBatchChecked([t, t, t], positions: [30 + step, 30 + step, 30 + step], caches: batched, headMasks: masks)
            for (i, mask) in masks.enumerated() {
                m.headMask = mask
                let single = try m.forwardChecked([t], startPosition: 30 + step, cache: alone[i], phase: .decode)
                m.headMask = nil
                XCTAssertEqual(try rows[i].get().map(\.bitPattern), single.map(\.bitPattern), "sequence \(i), step \(step)")
                XCTAssertEqual(batched[i].stats, alone[i].stats)
            }
            let (r0, r1) = (try rows[0].get(), try rows[1].get())
            differ = differ || r0 != r1
        }
        XCTAssertTrue(differ, "the masks change the logits (the test could fail)")
    }

    /// A sequence whose numbers turn non-finite gets its `NonFiniteError` (layer and position, as
    /// `forwardChecked` names them); its companions' logits are untouched.
    func testANonFiniteSequenceFailsAloneInTheBatch() throws {
        let c = try ModelConfig(hiddenSize: 32, intermediateSize: 64, layers: 3, heads: 4, kvHeads: 2, vocabSize: 50)
        var w = ModelWeights.synthetic(c, seed: 5)
        w.embedding[7 * 32 + 3] = .nan                           // token 7's embedding row
        let m = LlamaModel(config: c, weights: w)
        let caches = (0..<3).map { _ in m.makeCache() }, alone = m.makeCache()
        for cache in caches + [alone] { _ = try m.forwardChecked([1, 2, 3], startPosition: 0, cache: cache, phase: .prefill) }
        let rows = m.decodeBatchChecked([4, 7, 4], positions: [3, 3, 3], caches: caches)
        XCTAssertThrowsError(try rows[1].get()) { e in
            XCTAssertEqual((e as? NonFiniteError)?.layer, 0)
            XCTAssertEqual((e as? NonFiniteError)?.position, 3)
        }
        let single = try m.forwardChecked([4], startPosition: 3, cache: alone, phase: .decode)
        XCTAssertEqual(try rows[0].get().map(\.bitPattern), single.map(\.bitPattern))
        XCTAssertEqual(try rows[2].get().map(\.bitPattern), single.map(\.bitPattern))
    }
}
