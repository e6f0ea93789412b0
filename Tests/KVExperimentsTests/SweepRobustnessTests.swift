import Foundation
import XCTest
import KVModel
@testable import KVExperiments

/// Issue 16 at the sweep level: runs that fail are recorded as failed, counted, and retried by a
/// rerun; a model that overflows mid-run stops with "non-finite logits at layer/position".
final class SweepRobustnessTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-sweeprob-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func config(_ output: String, model: String = "synthetic: tiny,layers=2,std=0.15,seed=3") -> String {
        """
        output: \(output)
        models:
          - id: m
            \(model)
        tasks:
          - task: fidelity
            context: 64
            samples: 1
            eval_tokens: 4
        policies:
          - policy: full
          - policy: streaming_llm
            keep: 0.5
          - policy: snapkv
            keep: 0.5
            window: 8
        """
    }

    func sweep(_ yaml: String, skipFailed: Bool = false) throws -> SweepSummary {
        var o = RunOptions()
        o.progress = false
        o.skipFailed = skipFailed
        return try SweepRunner(config: ExperimentConfig.parse(yaml, file: "s.yaml"), options: o).run { _ in }
    }

    /// A failed run used to count as finished: a rerun skipped it and the file kept the error.
    func testRerunRetriesFailedRunsUnlessSkipFailed() throws {
        let out = dir.appendingPathComponent("r.h5").path
        let yaml = config(out)
        // An earlier invocation whose run 2 failed.
        do {
            let first = try sweep(yaml)
            XCTAssertTrue(first.allSucceeded)
            XCTAssertEqual(first.ran, 3)
        }
        let p2 = dir.appendingPathComponent("seeded.h5").path
        let seeded = config(p2)
        let cs = try ExperimentConfig.parse(seeded, file: "s.yaml")
        let point = cs.grid[1]
        do {
            let store = try ResultsStore.open(path: p2, provenance: Provenance(kvlabVersion: "0", gitCommit: "", created: "",
                host: "", configText: seeded, configHash: cs.gridHash, schemaVersion: 1), models: [], force: false)
            try store.commit(RunRecord(index: point.index, key: point.key, modelID: "m", taskKind: "fidelity", context: 64, seed: 0,
                                       policyKind: point.policy.kind, policyFamily: point.policy.family, policyLabel: point.policy.label,
                                       policyParams: point.policy.parametersJSON, status: "error: out of luck"))
            store.close()
        }
        let skipping = try sweep(seeded, skipFailed: true)
        XCTAssertEqual(skipping.skippedFailed, 1)
        XCTAssertFalse(skipping.allSucceeded, "a skipped failed run still means the file is incomplete")
        XCTAssertEqual(try ResultsFile.read(p2).run(index: point.index)?.status, "error: out of luck")
        let retrying = try sweep(seeded)
        XCTAssertEqual(retrying.retried, 1)
        XCTAssertEqual(retrying.ran, 1)
        XCTAssertTrue(retrying.allSucceeded)
        let file = try ResultsFile.read(p2)
        XCTAssertEqual(file.runs.map(\.status), ["ok", "ok", "ok"])
        func untimed(_ r: RunRecord?) -> [RunRecord.Metric] { r?.scalars.filter { !ResultsEquality.timings.contains($0.name) } ?? [] }
        XCTAssertEqual(untimed(file.run(index: point.index)), untimed(try ResultsFile.read(out).run(index: point.index)),
                       "the retry computes what a first run computes")
    }

    /// Finite weights that overflow in layer 0 (o_proj entries of 3e38): every run is recorded as
    /// failed with the layer and position, and the sweep reports failures (run exits 2).
    func testOverflowingModelFailsEveryRunWithLayerAndPosition() throws {
        let model = dir.appendingPathComponent("overflow")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        let src = URL(fileURLWithPath: "models/kvlab-retrieval")
        try FileManager.default.copyItem(at: src.appendingPathComponent("config.json"), to: model.appendingPathComponent("config.json"))
        var data = try Data(contentsOf: src.appendingPathComponent("model.safetensors"))
        let n = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8 ..< 8 + n)) as! [String: Any]
        let entry = header["model.layers.0.self_attn.o_proj.weight"] as! [String: Any]
        let offsets = entry["data_offsets"] as! [Int]
        let huge = withUnsafeBytes(of: Float(3e38)) { Data($0) }
        for at in stride(from: 8 + n + offsets[0], to: 8 + n + offsets[1], by: 4) { data.replaceSubrange(at ..< at + 4, with: huge) }
        try data.write(to: model.appendingPathComponent("model.safetensors"))
        XCTAssertNoThrow(try LlamaModel(checkpoint: model.path), "the weights are finite: the load check passes")

        let out = dir.appendingPathComponent("o.h5").path
        let s = try sweep(config(out, model: "path: \(model.path)"))
        XCTAssertEqual(s.failed, 3)
        XCTAssertFalse(s.allSucceeded)
        for r in try ResultsFile.read(out).runs {
            XCTAssertTrue(r.status.hasPrefix("error: non-finite logits at layer 0/position "), r.status)
            XCTAssertTrue(r.scalars.isEmpty, "no metrics from NaN")
        }
    }
}
