import XCTest
import Foundation
import KVModel

/// Logit and greedy-decoding parity with HF transformers (eager, float32) for the shipped
/// retrieval model, models/kvlab-retrieval, on a ~300-token passkey prompt
/// (fixture from scripts/fixtures/make_retrieval_parity.py).
final class RetrievalModelParityTests: XCTestCase {
    /// Tests/KVModelTests -> ../../models/kvlab-retrieval
    static let modelDir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("../../models/kvlab-retrieval").standardizedFileURL.path
    static let fixture = Fixtures.root.appendingPathComponent("retrieval/expected.json")

    struct Expected: Decodable {
        let input_ids: [Int]
        let logits: [[Float]]
        /// The prompt positions of the `logits` rows; absent = every position, in order.
        let logit_positions: [Int]?
        let greedy_ids: [Int]
        let min_greedy_margin: Double
        let key: Int?
    }

    func testLogitsAndGreedyMatchTransformers() throws {
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: Self.fixture))
        let model = try LlamaModel(checkpoint: Self.modelDir)
        let V = model.config.vocabSize
        XCTAssertEqual(V, 128)
        let positions = expected.logit_positions ?? Array(expected.input_ids.indices)
        XCTAssertEqual(positions.count, expected.logits.count)

        let result = model.generate(prompt: expected.input_ids, maxNewTokens: expected.greedy_ids.count,
                                    allPromptLogits: true)
        XCTAssertEqual(result.promptLogits.count, expected.input_ids.count * V)
        // Max relative error: max |ours - ref| / max |ref| over every stored position and token.
        var maxDiff: Float = 0, maxRef: Float = 0
        for (row, p) in zip(expected.logits, positions) {
            XCTAssertEqual(row.count, V)
            for (j, ref) in row.enumerated() {
                maxDiff = max(maxDiff, abs(result.promptLogits[p * V + j] - ref))
                maxRef = max(maxRef, abs(ref))
            }
        }
        let relative = maxDiff / maxRef
        print("kvlab-retrieval parity: \(expected.input_ids.count) tokens, \(positions.count) logit rows, " +
              "max |diff| \(maxDiff), max |ref| \(maxRef), relative \(relative); greedy \(result.tokens), " +
              "reference margin \(expected.min_greedy_margin)")
        XCTAssertLessThan(relative, 1e-4, "max relative logit error \(relative)")
        XCTAssertEqual(result.tokens, expected.greedy_ids, "greedy continuation differs")
    }
}
