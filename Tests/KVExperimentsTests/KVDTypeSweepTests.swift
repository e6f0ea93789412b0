import Foundation
import XCTest
@testable import KVExperiments
import KVModel

/// `kv_dtype` under the sweep runner's shared prefill and lockstep decoding: each model entry's
/// reference records its prefill in the entry's precision and that entry's policies replay it
/// (never another entry's); every number equals running each policy's own prefill on two workers,
/// bit for bit, and the half-precision entries really differ from the Float32 one.
final class KVDTypeSweepTests: XCTestCase {
    var dir: URL!
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-kvdtype-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func config(_ output: String) -> String {
        let path = Self.root.appendingPathComponent("models/kvlab-retrieval").path
        return """
        output: \(output)
        models:
          - id: m32
            path: \(path)
          - id: m16
            path: \(path)
            kv_dtype: f16
        tasks:
          - task: passkey
            context: 128
            samples: 2
        policies:
          - policy: full
          - {policy: snapkv, keep: 0.5, window: 8}
          - {policy: kivi, bits: 2, group_size: 16, residual: 16}
        """
    }

    func sweep(_ output: String, jobs: Int = 1, shared: Bool = true) throws -> ResultsFile {
        var o = RunOptions(); o.progress = false; o.jobs = jobs; o.sharedPrefill = shared
        let s = try SweepRunner(config: try ExperimentConfig.parse(config(output), file: "a.yaml"), options: o).run { _ in }
        XCTAssertEqual(s.failed, 0)
        return try ResultsFile.read(output)
    }

    func testSharedPrefillAndLockstepPerDTypeEqualOwnPrefillRuns() throws {
        let shared = try sweep(dir.appendingPathComponent("shared.h5").path)
        let own = try sweep(dir.appendingPathComponent("own.h5").path, jobs: 2, shared: false)
        XCTAssertEqual(shared.runs.count, 2 * 3)
        XCTAssertEqual(ResultsEquality.differences(shared, own), [])
        // One reference per entry: two shared-prefill groups, keyed by the dtype.
        XCTAssertEqual(Set(shared.runs.map { try! JSONDecoder().decode(RunKey.self, from: Data($0.key.utf8)).reference }).count, 2)
        for r in shared.runs {
            let key = try JSONDecoder().decode(RunKey.self, from: Data(r.key.utf8))
            let dtype = r.infoValue("kv_dtype")
            XCTAssertEqual(key.model.hasSuffix("|kv_dtype=\(dtype ?? "")"), dtype != "f32", r.key)
            switch key.policy {
            case "full": XCTAssertEqual(r.infoValue("prefill"), "own", r.key)
            default: XCTAssertEqual(r.infoValue("prefill"), "shared", r.key)
            }
        }
        // Float16 rows: the full cache holds half the Float32 entry's bytes.
        func stored(_ dtype: String) -> Double? {
            shared.runs.first { r in
                r.infoValue("kv_dtype") == dtype && (try? JSONDecoder().decode(RunKey.self, from: Data(r.key.utf8)))?.policy == "full"
            }?.scalar("kv_bytes_stored")
        }
        let f32 = try XCTUnwrap(stored("f32"))
        XCTAssertGreaterThan(f32, 0)
        XCTAssertEqual(stored("f16"), f32 / 2)
    }
}
