import Foundation
import XCTest
import KVModel

/// The real SmolLM2-135M-Instruct Q4_1 GGUF (token_embd Q8_0, matrices Q4_1, norms F32) against
/// transformers' logits on the same file (scripts/fixtures/make_gguf_real_fixture.py): the last
/// position's full logits and the top 20 of every position within 1e-4 relative, and 16 equal greedy
/// ids. Runs when models/SmolLM2-135M-Instruct.Q4_1.gguf is present (bash scripts/fetch_model.sh);
/// skipped otherwise, unless KVLAB_REQUIRE_REAL_MODEL=1, which makes a missing model a failure.
final class GGUFRealModelTests: XCTestCase {
    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Expected: Decodable {
        let model_file: String, model_sha256: String
        let input_ids: [Int], greedy_ids: [Int]
        let last_logits: String
        let top_ids: [[Int]], top_logits: [[Float]]
        let min_greedy_margin: Double
    }

    static func modelPath(_ relative: String) throws -> String {
        let path = repo.appendingPathComponent(relative).path
        if FileManager.default.fileExists(atPath: path) { return path }
        if ProcessInfo.processInfo.environment["KVLAB_REQUIRE_REAL_MODEL"] == "1" {
            XCTFail("\(path) is missing and KVLAB_REQUIRE_REAL_MODEL=1 (fetch it with: bash scripts/fetch_model.sh)")
            throw XCTSkip("model missing")
        }
        throw XCTSkip("\(path) not present (bash scripts/fetch_model.sh fetches it)")
    }

    func testLogitsAndGreedyMatchTransformers() throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gguf_real/smollm2_q4_1.json")
        let e = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: fixture))
        let path = try Self.modelPath(e.model_file)
        let model = try ModelSource.parse(path).load()
        let V = model.config.vocabSize, T = e.input_ids.count
        XCTAssertEqual(V, 49152)
        let result = model.generate(prompt: e.input_ids, maxNewTokens: e.greedy_ids.count, allPromptLogits: true)
        XCTAssertEqual(result.promptLogits.count, T * V)

        // The last position in full.
        let last = Data(base64Encoded: e.last_logits)!.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(last.count, V)
        var maxDiff: Float = 0, maxRef: Float = 0
        for j in 0..<V {
            maxDiff = max(maxDiff, abs(result.promptLogits[(T - 1) * V + j] - last[j]))
            maxRef = max(maxRef, abs(last[j]))
        }
        // The top 20 of every position.
        var topDiff: Float = 0, topRef: Float = 0
        for r in 0..<T {
            for (id, ref) in zip(e.top_ids[r], e.top_logits[r]) {
                topDiff = max(topDiff, abs(result.promptLogits[r * V + id] - ref))
                topRef = max(topRef, abs(ref))
            }
        }
        print(String(format: "SmolLM2-135M-Instruct Q4_1 vs transformers: last row max rel %.2e, top-20 rows max rel %.2e",
                     maxDiff / maxRef, topDiff / topRef))
        XCTAssertLessThan(maxDiff / maxRef, 1e-4, "last position: max relative logit error")
        XCTAssertLessThan(topDiff / topRef, 1e-4, "top-20 logits of every position: max relative error")
        XCTAssertEqual(result.tokens, e.greedy_ids, "greedy continuation differs (smallest margin \(e.min_greedy_margin))")
    }
}
