import Foundation
import XCTest
@testable import KVExperiments
import KVModel

/// Head ablation under the sweep runner's shared prefill and lockstep decoding: runs with different
/// masks (and none) decode in one batch, each with its own mask; a decode-only mask replays the
/// reference's prefill, a mask that applies in prefill runs its own; every number equals running
/// with own prefills on two workers, bit for bit.
final class LockstepAblationTests: XCTestCase {
    var dir: URL!
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-lockablate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func config(_ output: String) -> String {
        """
        output: \(output)
        models:
          - id: retrieval
            path: \(Self.root.appendingPathComponent("models/kvlab-retrieval").path)
        tasks:
          - task: passkey
            context: 128
            samples: 2
          - task: passkey
            context: 128
            samples: 2
            ablate_heads: "heads:2.0"
            ablate_phase: [decode, all]
          - task: passkey
            context: 128
            samples: 2
            ablate_heads: "heads:1.3,3.5"
            ablate_mode: zero
        policies:
          - policy: full
          - {policy: snapkv, keep: 0.5, window: 8}
          - {policy: cla, share_factor: 2, layers: 2}
        """
    }

    func sweep(_ output: String, jobs: Int = 1, shared: Bool = true) throws -> ResultsFile {
        var o = RunOptions(); o.progress = false; o.jobs = jobs; o.sharedPrefill = shared
        let s = try SweepRunner(config: try ExperimentConfig.parse(config(output), file: "a.yaml"), options: o).run { _ in }
        XCTAssertEqual(s.failed, 0)
        return try ResultsFile.read(output)
    }

    func testMasksPerRunInLockstepEqualOwnPrefillRuns() throws {
        let shared = try sweep(dir.appendingPathComponent("shared.h5").path)
        let own = try sweep(dir.appendingPathComponent("own.h5").path, jobs: 2, shared: false)
        XCTAssertEqual(shared.runs.count, 3 * 4)
        XCTAssertEqual(ResultsEquality.differences(shared, own), [])
        for r in shared.runs {
            let key = try JSONDecoder().decode(RunKey.self, from: Data(r.key.utf8))
            let prefill = r.infoValue("prefill")
            switch (key.ablateHeads, key.policy) {
            case (nil, "full"): XCTAssertEqual(prefill, "own", r.key)                        // the reference itself
            case (let a?, _) where a.hasSuffix("phases=all"): XCTAssertEqual(prefill, "own", r.key)   // the mask changes the prefill
            case (_, let p?) where p.hasPrefix("cla"): XCTAssertEqual(prefill, "shared_prefix", r.key)
            default: XCTAssertEqual(prefill, "shared", r.key)                                  // decode-only masks replay the reference's
            }
            if key.ablateHeads != nil {
                XCTAssertNotNil(r.perLayerHead.first { $0.name == "ablated_heads" }, r.key)
            }
        }
        // The copy head off while decoding breaks the passkey; the unablated full cache finds it.
        let score = { (ablate: String?, policy: String) in
            shared.runs.first { r in
                let k = try! JSONDecoder().decode(RunKey.self, from: Data(r.key.utf8))
                return k.ablateHeads == ablate && k.policy == policy
            }!.scalar("score")!
        }
        XCTAssertEqual(score(nil, "full"), 1)
        XCTAssertLessThan(score("heads:2.0;mode=uniform;phases=decode", "full"), 0.5)
    }
}
