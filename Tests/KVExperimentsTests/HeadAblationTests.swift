import Foundation
import XCTest
@testable import KVExperiments
import KVModel
import KVPolicies

/// `ablate_heads` as a task option: parsed and validated with located errors, resolved to the
/// right heads, recorded in the results, and it breaks the retrieval model's passkey when its copy
/// head is masked while a control head does not.
final class HeadAblationTests: XCTestCase {
    var dir: URL!
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-ablate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A score file for kvlab-retrieval's shape (4 layers x 8 heads): head 2.0 first, then 3.5.
    func scoreFile() throws -> String {
        var scores = [Float](repeating: 0, count: 32)
        scores[2 * 8 + 0] = 0.9; scores[3 * 8 + 5] = 0.3
        let r = HeadDetectionResult(layers: 4, queryHeads: 8, prompts: [], needles: [], options: HeadDetectionOptions(),
                                    retrieval: scores, longContext: [:], longContextQueries: 0, attributes: [:])
        let path = dir.appendingPathComponent("scores.h5").path
        try r.save(to: path)
        return path
    }

    func testSelectionsResolveToTheRightHeads() throws {
        let path = try scoreFile()
        let top = try HeadAblation(selection: .top(2), scores: path).resolve(layers: 4, queryHeads: 8)!
        XCTAssertEqual(top.pairs.map { [$0.layer, $0.head] }, [[2, 0], [3, 5]])
        // Random draws: deterministic per seed, distinct heads, never the top k when a file is given.
        let a = try HeadAblation(selection: .random(2, seed: 1), scores: path).resolve(layers: 4, queryHeads: 8)!
        let b = try HeadAblation(selection: .random(2, seed: 1), scores: path).resolve(layers: 4, queryHeads: 8)!
        XCTAssertEqual(a.pairs.map { [$0.layer, $0.head] }, b.pairs.map { [$0.layer, $0.head] })
        XCTAssertEqual(a.count, 2)
        var seen = Set<[Int]>()
        for seed in 0..<40 {
            let m = try HeadAblation(selection: .random(2, seed: UInt64(seed)), scores: path).resolve(layers: 4, queryHeads: 8)!
            for p in m.pairs { XCTAssertFalse([[2, 0], [3, 5]].contains([p.layer, p.head])); seen.insert([p.layer, p.head]) }
        }
        XCTAssertGreaterThan(seen.count, 20, "draws should cover most of the 30 candidates")
        XCTAssertNil(try HeadAblation(selection: .none).resolve(layers: 4, queryHeads: 8))
        XCTAssertEqual(try HeadAblation.parseSelection("heads:1.2,0.7"), .list([[1, 2], [0, 7]]))
        XCTAssertThrowsError(try HeadAblation(selection: .list([[4, 0]])).resolve(layers: 4, queryHeads: 8))
        XCTAssertThrowsError(try HeadAblation(selection: .top(1), scores: path).resolve(layers: 30, queryHeads: 9)) {
            XCTAssertTrue("\($0)".contains("4 layers x 8"), "\($0)")
        }
        for bad in ["top", "top:0", "random:3", "heads:", "heads:1", "everything"] {
            XCTAssertThrowsError(try HeadAblation.parseSelection(bad), bad)
        }
    }

    func testBadConfigsGetLocatedMessages() throws {
        let path = try scoreFile()
        func yaml(_ task: String) -> String {
            "models:\n  - synthetic: tiny\ntasks:\n  - task: fidelity\n    context: 64\n\(task)\npolicies:\n  - policy: full\n"
        }
        let cases: [(String, String)] = [
            ("    ablate_heads: top:3", "ablate_scores"),
            ("    ablate_heads: sideways", "ablate_heads"),
            ("    ablate_mode: zero", "needs 'ablate_heads'"),
            ("    ablate_heads: top:3\n    ablate_scores: \(dir.path)/nope.h5", "nope.h5"),
            ("    ablate_heads: top:3\n    ablate_scores: \(path)\n    ablate_score: nope", "nope"),
            ("    ablate_heads: none\n    ablate_mode: off", "ablate_mode"),
        ]
        for (task, expected) in cases {
            XCTAssertThrowsError(try ExperimentConfig.parse(yaml(task), file: "a.yaml"), task) {
                XCTAssertTrue($0.localizedDescription.contains(expected), "\(task): \($0.localizedDescription)")
                XCTAssertTrue($0.localizedDescription.contains("a.yaml"), "\($0.localizedDescription)")
            }
        }
        let ok = try ExperimentConfig.parse(yaml("    ablate_heads: [none, top:1, \"random:1:7\"]\n    ablate_scores: \(path)"), file: "a.yaml")
        XCTAssertEqual(ok.grid.count, 3)
        XCTAssertEqual(Set(ok.grid.map(\.key)).count, 3)
        XCTAssertTrue(ok.grid[1].key.hasSuffix("\"ablate_heads\": \"top:1;scores=\(path);score=retrieval_score;mode=uniform;phases=decode\"}"))
        // Without ablation the run keys are what they were (resume and baselines stay valid).
        let plain = try ExperimentConfig.parse(yaml(""), file: "a.yaml")
        XCTAssertFalse(plain.grid[0].key.contains("ablate"))
    }

    func testMaskingTheCopyHeadBreaksPasskeyAndIsRecorded() throws {
        let path = try scoreFile()
        let out = dir.appendingPathComponent("ablate.h5").path
        let yaml = """
        output: \(out)
        models:
          - id: retrieval
            path: \(Self.root.appendingPathComponent("models/kvlab-retrieval").path)
        tasks:
          - task: passkey
            context: 160
            samples: 3
            ablate_heads: [none, top:1, heads:0.3]
            ablate_scores: \(path)
        policies:
          - policy: full
        """
        var o = RunOptions(); o.progress = false
        let s = try SweepRunner(config: try ExperimentConfig.parse(yaml, file: "x.yaml"), options: o).run { _ in }
        XCTAssertEqual(s.failed, 0)
        let f = try ResultsFile.read(out)
        let score = f.runs.map { $0.scalar("score")! }
        XCTAssertEqual(score[0], 1)             // intact model: every passkey found
        XCTAssertLessThan(score[1], 0.5)        // its copy head (2.0) switched off while decoding
        XCTAssertEqual(score[2], 1)             // a head the circuit does not use
        let grid = try XCTUnwrap(f.runs[1].perLayerHead.first { $0.name == "ablated_heads" })
        XCTAssertEqual(grid.values.enumerated().filter { $0.element == 1 }.map(\.offset), [2 * 8 + 0])
        XCTAssertEqual(f.runs[1].scalar("ablated_heads"), 1)
        XCTAssertNil(f.runs[0].perLayerHead.first { $0.name == "ablated_heads" })
    }
}
