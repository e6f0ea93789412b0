import XCTest
import KVCache
import KVModel
import KVTensor

/// Lockstep decoding (`LlamaModel.decodeBatch`): a sequence's logits, cache and figures are bit
/// for bit those of decoding it alone (`forward(_:phase: .decode)`), whichever sequences share its
/// steps and whatever BLAS threads run.
final class BatchDecodeTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,hidden=256,intermediate=512,std=0.15,seed=3").load()   // several weight blocks per matrix

    /// Decodes `tokens` of sequence 0 after a prompt, in lockstep with `others` other sequences
    /// (each its own prompt and tokens); returns sequence 0's logits of every step.
    func decode(others: Int, threads: Int = 1, offset: Int = 0) -> [Float] {
        BLAS.setThreads(threads)
        defer { BLAS.setThreads(1) }
        let m = Self.model
        let n = others + 1
        let caches = (0..<n).map { _ in m.makeCache() }
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
}
