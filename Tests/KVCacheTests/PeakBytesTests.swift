import XCTest
import KVCacheCore
import KVModel
import KVPolicies

/// `peakBytesStored` is the high-water mark of the stores' payload: measured after every append
/// (each prefill chunk, each decode token), before retention, never sampled after the step.
final class PeakBytesTests: XCTestCase {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/kvpress/model")

    /// Payload bytes of `tokens` tokens in one layer (all its KV heads).
    func layerBytes(_ m: LlamaModel, tokens: Int) -> Int { tokens * m.config.kvHeads * m.config.headDim * 4 * 2 }
    func fullPromptBytes(_ m: LlamaModel, tokens: Int) -> Int { m.config.layers * layerBytes(m, tokens: tokens) }

    /// A policy that compresses at the end of prefill compresses layer by layer (as kvpress's forward
    /// hooks and SnapKV's update_kv do): the high-water mark is reached when a layer holds the whole
    /// prompt and the other layers what they hold at that moment. On this 2-layer model, with the
    /// prompt in chunks of 64 (the last chunk 8 tokens): layer 0 holds all 200 tokens while layer 1
    /// holds the first 192, before either compresses. Sampling after the step (the old figure)
    /// gave the compressed size.
    func testPolicyThatCompressesAtTheEndOfPrefillPeaksAtTheWholePrompt() throws {
        let m = try LlamaModel(checkpoint: Self.model.path)
        XCTAssertEqual(m.config.layers, 2)
        let prompt = (0..<200).map { 3 + $0 % 120 }
        let full = fullPromptBytes(m, tokens: prompt.count)
        let policies: [() throws -> CachePolicy] = [
            { try SnapKV(budget: .keep(0.25), window: 16) }, { try H2O(budget: .keep(0.25)) },
            { try StreamingLLM(budget: .tokens(40)) }, { try Knorm(budget: .keep(0.25)) },
            { try KIVI(bits: 2, groupSize: 32, residual: 32) }]
        for make in policies {
            m.prefillChunk = 64
            var cache = m.makeCache(policy: try make())
            _ = m.forward(prompt, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            let name = cache.policy.name
            XCTAssertLessThan(cache.stats.bytesStored, full / 2, "\(name) compresses")
            XCTAssertEqual(cache.stats.peakBytesStored, layerBytes(m, tokens: 200) + layerBytes(m, tokens: 192),
                           "\(name): every chunk's KV is held until the last chunk's step end")
            // One chunk: layer 0 holds the whole prompt, then compresses; layer 1 then holds the whole prompt
            // next to layer 0's compressed tokens: the peak is at least one layer's full prompt KV.
            m.prefillChunk = 512
            cache = m.makeCache(policy: try make())
            _ = m.forward(prompt, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            let layer0 = cache.stores[0].reduce(0) { $0 + $1.payloadBytes }
            XCTAssertEqual(cache.stats.peakBytesStored, layerBytes(m, tokens: 200) + layer0, name)
            XCTAssertGreaterThan(cache.stats.peakBytesStored, cache.stats.bytesStored, name)
        }
    }

    func testDecodeStepsPeakOneTokenAboveTheBudget() throws {
        let m = try LlamaModel(checkpoint: Self.model.path)
        let cache = m.makeCache(policy: try StreamingLLM(budget: .tokens(40)))
        _ = m.forward(Array(repeating: 5, count: 30), startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        for i in 0..<20 { _ = m.forward([7], startPosition: 30 + i, cache: cache, phase: .decode) }
        // 30 + 20 tokens fed, 40 kept: a layer holds a 41st token before it evicts one (the layer
        // after it still holds 40).
        XCTAssertEqual(cache.stats.bytesStored, fullPromptBytes(m, tokens: 40))
        XCTAssertEqual(cache.stats.peakBytesStored, fullPromptBytes(m, tokens: 40) + layerBytes(m, tokens: 1))
    }

    func testFullCachePeakIsWhatItHolds() throws {
        let m = try LlamaModel(checkpoint: Self.model.path)
        let cache = m.makeCache()
        _ = m.forward(Array(repeating: 9, count: 50), startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        _ = m.forward([4], startPosition: 50, cache: cache, phase: .decode)
        XCTAssertEqual(cache.stats.peakBytesStored, cache.stats.bytesStored)
        XCTAssertEqual(cache.stats.bytesStored, fullPromptBytes(m, tokens: 51))
    }
}
