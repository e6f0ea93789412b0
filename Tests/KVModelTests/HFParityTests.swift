import XCTest
import KVModel
import KVCacheCore

/// Logit and greedy-decoding parity with HF transformers on tiny random checkpoints
/// (fixtures from scripts/fixtures/make_hf_fixtures.py).
final class HFParityTests: XCTestCase {
    static let cases = ["llama_gqa", "qwen2_bias_tied_mqa", "llama31_rope", "llama31_rope_v4_config", "llama_linear_rope",
                        "mistral_explicit_head_dim", "llama_bf16", "llama_f16", "llama_sharded", "llama_attention_bias"]

    func testLogitsAndGreedyMatchTransformers() throws {
        for name in Self.cases {
            let expected = try Fixtures.expected(name)
            let model = try LlamaModel(checkpoint: Fixtures.hf(name))
            let V = model.config.vocabSize
            let result = model.generate(prompt: expected.input_ids, maxNewTokens: expected.greedy_ids.count,
                                        allPromptLogits: true)
            XCTAssertEqual(result.promptLogits.count, expected.input_ids.count * V, name)
            // Max relative error: max |ours - ref| / max |ref| over every position and token.
            var maxDiff: Float = 0, maxRef: Float = 0
            for (r, row) in expected.logits.enumerated() {
                for (j, ref) in row.enumerated() {
                    maxDiff = max(maxDiff, abs(result.promptLogits[r * V + j] - ref))
                    maxRef = max(maxRef, abs(ref))
                }
            }
            XCTAssertLessThan(maxDiff / maxRef, 1e-4, "\(name): max relative logit error \(maxDiff / maxRef)")
            XCTAssertEqual(result.tokens, expected.greedy_ids, "\(name): greedy continuation differs")
        }
    }

    /// Prefill in small chunks (several key blocks, several query blocks) must equal one-shot prefill.
    func testChunkedPrefillEqualsOneShot() throws {
        let model = try LlamaModel(checkpoint: Fixtures.hf("llama_gqa"))
        let prompt = (0..<40).map { ($0 * 7) % model.config.vocabSize }
        let whole = model.forward(prompt, startPosition: 0, cache: model.makeCache(), phase: .prefill, logits: .all)
        model.prefillChunk = 3
        let chunked = model.forward(prompt, startPosition: 0, cache: model.makeCache(), phase: .prefill, logits: .all)
        let diff = zip(whole, chunked).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-4)
    }

    /// Decoding token by token through the cache equals prefilling the same tokens.
    func testDecodeEqualsPrefill() throws {
        let model = try LlamaModel(checkpoint: Fixtures.hf("qwen2_bias_tied_mqa"))
        let prompt = (0..<12).map { ($0 * 5 + 3) % model.config.vocabSize }
        let all = model.forward(prompt, startPosition: 0, cache: model.makeCache(), phase: .prefill, logits: .all)
        let cache = model.makeCache()
        _ = model.forward(Array(prompt.prefix(4)), startPosition: 0, cache: cache, phase: .prefill)
        let V = model.config.vocabSize
        for i in 4..<prompt.count {
            let row = model.forward([prompt[i]], startPosition: i, cache: cache, phase: .decode)
            let ref = Array(all[(i * V)..<((i + 1) * V)])
            XCTAssertLessThan(zip(row, ref).map { abs($0 - $1) }.max()!, 1e-4, "position \(i)")
        }
    }
}
