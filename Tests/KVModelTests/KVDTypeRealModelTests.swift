import Foundation
import XCTest
import KVCacheCore
import KVModel

/// The real SmolLM2-135M-Instruct Q4_1 GGUF with a 16-bit KV cache against its Float32 KV cache on
/// the GGUF parity fixture's prompt (64 tokens): every prompt position's logits within a small
/// tolerance (relative to the largest logit; measured 1.2e-3 for f16, 8.5e-3 for bf16), and the same
/// 16 greedy ids for f16 (bf16 differs within them on this prompt). Runs when the
/// model file is present; skipped otherwise, unless KVLAB_REQUIRE_REAL_MODEL=1.
final class KVDTypeRealModelTests: XCTestCase {
    struct Prompt: Decodable { let input_ids: [Int] }

    func testHalfKVCacheLogitsAndGreedyIdsMatchFloat32() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gguf_real/smollm2_q4_1.json")
        let ids = try JSONDecoder().decode(Prompt.self, from: Data(contentsOf: fixture)).input_ids
        let model = try ModelSource.parse(try GGUFRealModelTests.modelPath("models/SmolLM2-135M-Instruct.Q4_1.gguf")).load()
        func run(_ dtype: KVDType) -> GenerationResult {
            model.generate(prompt: ids, maxNewTokens: 16, cache: model.makeCache(kvDType: dtype), allPromptLogits: true)
        }
        let ref = run(.f32)
        let scale = ref.promptLogits.map { abs($0) }.max()!
        for (dtype, tolerance) in [(KVDType.f16, Float(3e-3)), (.bf16, Float(2e-2))] {
            let r = run(dtype)
            XCTAssertEqual(r.stats.bytesStored * 2, ref.stats.bytesStored)
            let worst = zip(r.promptLogits, ref.promptLogits).map { abs($0 - $1) }.max()!
            print("kv_dtype \(dtype.rawValue): max |logit - f32 logit| = \(worst) (largest logit \(scale)); greedy \(r.tokens == ref.tokens ? "equal" : "differs")")
            XCTAssertGreaterThan(worst, 0, "\(dtype): the cache was not rounded")
            XCTAssertLessThan(worst / scale, tolerance, "\(dtype)")
            if dtype == .f16 { XCTAssertEqual(r.tokens, ref.tokens) }
        }
    }
}
