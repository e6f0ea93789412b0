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
}
