import Foundation
import XCTest
import KVModel
@testable import KVExperiments

/// A .gguf file as a config's `models: - path:`: parsed as a GGUF source, swept, and recorded with
/// the config derived from its metadata and the file's sha256.
final class GGUFModelConfigTests: XCTestCase {
    let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("KVModelTests/Fixtures/gguf/qwen2_Q8_0.gguf").path

    func testSweepOnAGGUFModelRecordsItsIdentity() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-gguf-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("g.h5").path
        let yaml = """
        name: gguf
        output: \(out)
        models:
          - path: \(gguf)
        tasks:
          - task: fidelity
            context: 24
            samples: 1
            eval_tokens: 4
        policies:
          - policy: full
          - policy: streaming_llm
            keep: 0.5
        """
        let config = try ExperimentConfig.parse(yaml, file: "g.yaml")
        XCTAssertEqual(config.models[0].source, .gguf(path: gguf))
        XCTAssertEqual(config.models[0].id, "qwen2_Q8_0.gguf")
        var options = RunOptions()
        options.progress = false
        let s = try SweepRunner(config: config, options: options).run { _ in }
        XCTAssertEqual(s.ran, 2); XCTAssertEqual(s.failed, 0)
        let f = try ResultsFile.read(out)
        XCTAssertEqual(f.runs.map(\.status), ["ok", "ok"])
        let m = try XCTUnwrap(f.models.first)
        XCTAssertEqual(m.weightsHash, try SHA256.hex(file: gguf))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(m.configJSON.utf8)) as? [String: Any])
        XCTAssertEqual(json["modelType"] as? String, "qwen2")
        XCTAssertEqual(json["tieWordEmbeddings"] as? Bool, true)
        XCTAssertEqual(m.configHash, SHA256.hex(m.configJSON))
    }

    func testAMissingGGUFPathIsAConfigError() throws {
        let yaml = "models:\n  - path: /no/such/model.gguf\ntasks:\n  - task: mqar\n    context: 16\npolicies:\n  - policy: full\n"
        XCTAssertThrowsError(try ExperimentConfig.parse(yaml, file: "x.yaml")) { e in
            let m = (e as? LocalizedError)?.errorDescription ?? "\(e)"
            XCTAssertTrue(m.contains("models[0].path") && m.contains("/no/such/model.gguf") && m.contains("not found"), m)
        }
    }

    /// `weights: f32` dequantizes the matrices at load and makes grid points of their own; the
    /// default keeps the file's types and the keys of earlier versions; a bad value names the field.
    func testWeightsKey() throws {
        func yaml(_ weights: String?) -> String {
            "models:\n  - path: \(gguf)\n" + (weights.map { "    weights: \($0)\n" } ?? "") +
            "tasks:\n  - task: mqar\n    context: 64\npolicies:\n  - policy: full\n"
        }
        let stored = try ExperimentConfig.parse(yaml(nil), file: "s.yaml")
        let f32 = try ExperimentConfig.parse(yaml("f32"), file: "f.yaml")
        XCTAssertEqual(stored.models[0].weights, .stored)
        XCTAssertEqual(f32.models[0].weights, .f32)
        XCTAssertFalse(stored.grid[0].key.contains("weights"))
        XCTAssertTrue(f32.grid[0].key.contains("|weights=f32"))
        XCTAssertEqual(try ExperimentConfig.parse(yaml("stored"), file: "s.yaml").grid[0].key, stored.grid[0].key)
        // Beside kv_dtype: both in the key, weights first; each entry's own.
        let both = try ExperimentConfig.parse(yaml("f32\n    kv_dtype: f16"), file: "b.yaml")
        XCTAssertEqual(both.models[0].weights, .f32)
        XCTAssertEqual(both.models[0].kvDType, .f16)
        XCTAssertTrue(both.grid[0].key.contains("|weights=f32|kv_dtype=f16"), both.grid[0].key)
        XCTAssertThrowsError(try ExperimentConfig.parse(yaml("f8"), file: "x.yaml")) { e in
            let m = (e as? LocalizedError)?.errorDescription ?? "\(e)"
            XCTAssertTrue(m.contains("models[0].weights") && m.contains("f8"), m)
        }
    }
}
