import Foundation
import XCTest
import KVModel

/// Logit and greedy parity with transformers' GGUF loader on tiny random Llama and Qwen2 models
/// written as GGUF in ten types (fixtures from scripts/fixtures/make_gguf_fixtures.py).
final class GGUFParityTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gguf")

    struct Case: Decodable {
        let file: String, arch: String, type: String
        let tensor_types: [String: Int]
        let input_ids: [Int], greedy_ids: [Int]
        let logits: String
        let min_greedy_margin: Double
        var logitValues: [Float] { Data(base64Encoded: logits)!.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) } }
    }
    struct Expected: Decodable { let cases: [String: Case] }

    static func expected() throws -> [String: Case] {
        try JSONDecoder().decode(Expected.self, from: Data(contentsOf: dir.appendingPathComponent("expected.json"))).cases
    }

    /// Every type the issue names, on both architectures.
    func testFixturesCoverEveryTypeAndArchitecture() throws {
        let cases = try Self.expected()
        for arch in ["llama", "qwen2"] {
            let types = Set(cases.values.filter { $0.arch == arch }.flatMap { $0.tensor_types.keys })
            for t in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q6_K"] {
                XCTAssertTrue(types.contains(t), "\(arch): no fixture holds a \(t) tensor")
            }
        }
    }

    func testLogitsAndGreedyMatchTransformers() throws {
        let cases = try Self.expected()
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        var report: [String] = []
        for (name, c) in cases.sorted(by: { $0.key < $1.key }) {
            let path = Self.dir.appendingPathComponent(c.file).path
            XCTAssertTrue(ModelSource.isGGUF(path))
            let model = try ModelSource.parse(path).load()
            XCTAssertEqual(model.config.modelType, c.arch, name)
            let V = model.config.vocabSize
            let want = c.logitValues
            XCTAssertEqual(want.count, c.input_ids.count * V, name)
            let result = model.generate(prompt: c.input_ids, maxNewTokens: c.greedy_ids.count, allPromptLogits: true)
            var maxDiff: Float = 0, maxRef: Float = 0
            for i in 0..<want.count {
                maxDiff = max(maxDiff, abs(result.promptLogits[i] - want[i]))
                maxRef = max(maxRef, abs(want[i]))
            }
            XCTAssertLessThan(maxDiff / maxRef, 1e-4, "\(name): max relative logit error \(maxDiff / maxRef)")
            XCTAssertEqual(result.tokens, c.greedy_ids, "\(name): greedy continuation differs")
            report.append(String(format: "%@ %.2e", name, maxDiff / maxRef))
        }
        print("GGUF parity (max |diff| / max |logit|): " + report.joined(separator: ", "))
    }

    /// The loader's config: architecture-specific biases, tied output, explicit head_dim, bos/eos ids.
    func testConfigFromMetadata() throws {
        let llama = try GGUFCheckpoint(path: Self.dir.appendingPathComponent("llama_F32.gguf").path).config
        XCTAssertEqual([llama.layers, llama.hiddenSize, llama.heads, llama.kvHeads, llama.headDim, llama.vocabSize, llama.maxPositions],
                       [1, 32, 4, 2, 8, 32, 128])
        XCTAssertFalse(llama.tieWordEmbeddings)
        XCTAssertFalse(llama.qkvBias)
        XCTAssertEqual(llama.bosTokenId, 1)
        XCTAssertEqual(llama.eosTokenIds, [2])
        let qwen = try GGUFCheckpoint(path: Self.dir.appendingPathComponent("qwen2_Q8_0.gguf").path).config
        XCTAssertTrue(qwen.tieWordEmbeddings)
        XCTAssertTrue(qwen.qkvBias)
        XCTAssertFalse(qwen.outputBias)
        XCTAssertEqual(qwen.ropeTheta, 1e6)
        XCTAssertEqual(qwen.rmsNormEps, 1e-6)
        let k = try GGUFCheckpoint(path: Self.dir.appendingPathComponent("llama_k_Q4_K.gguf").path)
        XCTAssertEqual(k.config.headDim, 16, "explicit head_dim (key_length) differs from hidden / heads = 128")
        XCTAssertTrue(k.typeSummary.contains("Q4_K"), k.typeSummary)
    }
}
