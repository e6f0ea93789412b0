import Foundation
import XCTest
@testable import KVExperiments

/// Cost-balanced shard plans, plan files, the merge's completeness checks and `kvlab status`'s survey.
final class ShardPlanTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// A skewed grid: contexts 128 to 2048 (16x apart), six policies of three cost classes = 30 points.
    static func skewed(output: String = "out/skewed.h5") -> String {
        """
        name: skewed
        output: \(output)
        models:
          - id: small
            synthetic: small,layers=2,seed=1
        tasks:
          - task: fidelity
            context: [128, 256, 512, 1024, 2048]
            samples: 2
            eval_tokens: 8
        policies:
          - policy: full
          - policy: streaming_llm
            keep: [0.25, 0.5]
          - policy: h2o
            keep: 0.25
          - policy: kivi
            bits: [2, 4]
        """
    }

    /// The e2e test's tiny sweep: 2 tasks x 5 policies = 10 quick runs.
    func tiny(output: String) -> String {
        """
        name: tiny
        output: \(output)
        models:
          - id: tiny
            synthetic: tiny,layers=2,std=0.15,seed=3
        tasks:
          - task: fidelity
            context: [48, 96]
            samples: 1
            eval_tokens: 8
        policies:
          - policy: full
          - policy: streaming_llm
            keep: [0.25, 0.5]
          - policy: snapkv
            keep: [0.25, 0.5]
            window: 8
        """
    }

    func parse(_ yaml: String) throws -> ExperimentConfig { try ExperimentConfig.parse(yaml, file: "test.yaml") }

    func testPlanIsDeterministicCompleteAndBalancedBetterThanRoundRobin() throws {
        let c = try parse(Self.skewed())
        let plan = try ShardPlan.make(c, shards: 4)
        XCTAssertEqual(plan, try ShardPlan.make(c, shards: 4), "the same config and N must give the same plan")
        XCTAssertEqual(plan, try ShardPlan.make(parse(Self.skewed(output: "elsewhere/x.h5")), shards: 4), "output path must not matter")
        let all = (0..<4).flatMap { plan.indices(of: $0) }
        XCTAssertEqual(all.sorted(), Array(1...30), "every point in exactly one shard")
        for s in 0..<4 { XCTAssertFalse(plan.indices(of: s).isEmpty) }
        XCTAssertLessThanOrEqual(plan.imbalance, 1.2, "estimated shard costs within 20%: \(plan.shardCost)")
        // The old round-robin slicing, costed the same way, is far worse on this grid.
        let roundRobin = ShardPlan(c, grid: c.grid, count: 4, shardOf: c.grid.map { ($0.index - 1) % 4 })
        XCTAssertGreaterThan(roundRobin.imbalance, plan.imbalance)
        // Shard costs are the runs' costs plus one reference per (model, task) group in the shard.
        for s in 0..<4 {
            let idx = plan.indices(of: s)
            let runs = idx.map { plan.pointCost[$0 - 1] }.reduce(0, +)
            let groups = Set(idx.map { ShardPlan.groupKey(c.grid[$0 - 1]) }).count
            XCTAssertGreaterThan(plan.shardCost[s], runs)
            XCTAssertLessThanOrEqual(groups, 5)
        }
    }

    func testCostGrowsWithContextSamplesAndPolicyClass() throws {
        let c = try parse(Self.skewed())
        let shape = CostModel.Shape.of(c.models[0])
        let g = c.grid
        func cost(_ ctx: Int, _ kind: String) -> Double {
            CostModel.cost(g.first { $0.task.context == ctx && $0.policy.kind == kind }!, shape: shape)
        }
        XCTAssertGreaterThan(cost(2048, "full"), 2 * cost(1024, "full"), "attention makes cost superlinear in context")
        XCTAssertLessThan(cost(2048, "full"), 4 * cost(1024, "full"))
        // full reuses the reference; H2O's causal scoring adds a multiple of the prefill attention.
        let full512 = g.first { $0.task.context == 512 && $0.policy.kind == "full" }!
        XCTAssertLessThan(cost(512, "full"), 0.1 * CostModel.referenceCost(full512, shape: shape))
        XCTAssertLessThan(cost(512, "kivi"), CostModel.referenceCost(full512, shape: shape), "kivi replays the shared prefill")
        XCTAssertEqual(cost(512, "kivi"), cost(512, "streaming_llm"))
        let attention = Double(c.grid[0].task.samples) * CostModel.sampleCost(g.first { $0.task.context == 512 }!.task, shape: shape).prefillAttention
        XCTAssertGreaterThan(attention, 0)
        XCTAssertEqual(cost(512, "h2o") - cost(512, "kivi"), 4 * attention, accuracy: 1e-6 * attention)
        var twice = g[0]; twice.task.samples *= 2
        XCTAssertEqual(CostModel.cost(twice, shape: shape), 2 * CostModel.cost(g[0], shape: shape), accuracy: 1)
    }

    /// A policy that replays the reference's dense prefill is not charged the prefill's weights;
    /// one that runs its own prefill (head pooling stores other heads from the first token) is.
    func testSharedPrefillIsNotChargedTwice() throws {
        let c = try parse("""
        name: shared
        output: out/shared.h5
        models:
          - id: small
            synthetic: small,layers=2,seed=1
        tasks:
          - task: passkey
            context: 512
            samples: 3
        policies:
          - policy: kivi
          - policy: head_pooling
            kv_heads: 1
        """)
        let shape = CostModel.Shape.of(c.models[0])
        let (kivi, pooled) = (c.grid[0], c.grid[1])
        XCTAssertTrue(kivi.policy.sharesDensePrefill)
        XCTAssertFalse(pooled.policy.sharesDensePrefill)
        let s = CostModel.sampleCost(kivi.task, shape: shape)
        XCTAssertGreaterThan(s.prefillWeights, 0)
        XCTAssertEqual(CostModel.cost(pooled, shape: shape) - CostModel.cost(kivi, shape: shape), 3 * s.prefillWeights,
                       accuracy: 1e-9 * s.total)
        XCTAssertEqual(CostModel.cost(kivi, shape: shape), 3 * (s.total - s.prefillWeights), accuracy: 1e-9 * s.total)
    }

    func testTooManyShardsIsAnErrorNamingTheGridSize() throws {
        let c = try parse(Self.skewed())
        XCTAssertThrowsError(try ShardPlan.make(c, shards: 31)) { e in
            XCTAssertEqual(e as? ClusterError, .badShards(config: "test.yaml", shards: 31, points: 30))
            XCTAssertTrue(e.localizedDescription.contains("only 30 grid points"), e.localizedDescription)
        }
        XCTAssertThrowsError(try ShardPlan.make(c, shards: 0))
        XCTAssertNoThrow(try ShardPlan.make(c, shards: 30))
    }

    func testPlanFileRoundTripsAndRefusesAnotherConfigOrAGap() throws {
        let c = try parse(Self.skewed())
        let plan = try ShardPlan.make(c, shards: 3)
        let path = dir.appendingPathComponent("plan.tsv").path
        try plan.text(c).write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertEqual(try ShardPlan.read(path, config: c), plan)
        // A plan of another grid.
        let other = try parse(Self.skewed().replacingOccurrences(of: "samples: 2", with: "samples: 3"))
        XCTAssertThrowsError(try ShardPlan.read(path, config: other)) { e in
            XCTAssertTrue(e.localizedDescription.contains("another config"), e.localizedDescription)
        }
        // A line dropped: a grid point without a shard.
        let text = plan.text(c).split(separator: "\n").filter { !$0.hasPrefix("1\t") && !$0.hasPrefix("0\t5\t") }.joined(separator: "\n")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ShardPlan.read(path, config: c)) { e in
            XCTAssertTrue(e.localizedDescription.contains("is not assigned"), e.localizedDescription)
        }
        // A run with a plan file runs exactly that shard's points.
        try plan.text(c).write(toFile: path, atomically: true, encoding: .utf8)
        var o = RunOptions(); o.shard = (1, 3); o.plan = try ShardPlan.read(path, config: c)
        XCTAssertEqual(SweepRunner(config: c, options: o).points.map(\.index), plan.indices(of: 1))
        var computed = RunOptions(); computed.shard = (1, 3)
        XCTAssertEqual(SweepRunner(config: c, options: computed).points.map(\.index), plan.indices(of: 1))
    }

    // MARK: - Shards on disk: merge checks and status

    /// Runs every shard of the tiny sweep (all but `skip`); returns the config and the shard paths.
    func runShards(_ n: Int, skip: Set<Int> = []) throws -> (ExperimentConfig, [String]) {
        let c = try parse(tiny(output: dir.appendingPathComponent("tiny.h5").path))
        var paths: [String] = []
        for i in 0..<n {
            var o = RunOptions(); o.shard = (i, n); o.progress = false
            let runner = SweepRunner(config: c, options: o)
            paths.append(runner.outputPath)
            XCTAssertEqual(runner.outputPath, ShardFiles.path(output: c.output, shard: i, count: n))
            if !skip.contains(i) { _ = try runner.run { _ in } }
        }
        return (c, paths)
    }

    func testMergeCheckNamesAMissingShardAndWritesNothing() throws {
        let (c, paths) = try runShards(3, skip: [1])
        XCTAssertThrowsError(try MergeCheck.check([paths[0], paths[2]])) { e in
            guard case .missingShards(3, [1], let expected)? = e as? ClusterError else { return XCTFail("\(e)") }
            XCTAssertTrue(expected[0].contains("tiny.shard1of3.h5"), expected[0])
        }
        // Named but absent on disk.
        XCTAssertThrowsError(try MergeCheck.check(paths)) { e in
            XCTAssertTrue(e.localizedDescription.contains("1/3") && e.localizedDescription.contains("no such file"), e.localizedDescription)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: c.output))
        // Shards of another N.
        var o = RunOptions(); o.shard = (0, 2); o.progress = false
        let two = try SweepRunner(config: c, options: o).run { _ in }
        XCTAssertThrowsError(try MergeCheck.check([paths[0], two.output, paths[2]])) { e in
            guard case .shardCountMismatch? = e as? ClusterError else { return XCTFail("\(e)") }
        }
    }

    func testMergeCheckNamesMissingGridPointsOfAnUnfinishedShard() throws {
        let (c, paths) = try runShards(2)
        XCTAssertTrue(try MergeCheck.check(paths).isEmpty)
        // Shard 1 as if killed: its file holds all but its last planned run.
        let plan = try ShardPlan.make(c, shards: 2)
        let lost = plan.indices(of: 1).last!
        let full = try ResultsFile.read(paths[1])
        try FileManager.default.removeItem(atPath: paths[1])
        let store = try ResultsStore.open(path: paths[1], provenance: full.provenance, models: full.models, force: false)
        try store.commitBatch(full.runs.filter { $0.index != lost })
        store.close()
        XCTAssertThrowsError(try MergeCheck.check(paths)) { e in
            guard case .incomplete(1, 10, let detail)? = e as? ClusterError else { return XCTFail("\(e)") }
            XCTAssertTrue(detail[0].hasPrefix("shard 1/2") && detail[0].contains("#\(lost) "), detail[0])
        }
        // Status says the same, from the files alone (config read from the shard files).
        let survey = ShardSurvey.read(output: c.output, count: 2, files: [:], config: nil)
        XCTAssertNotNil(survey.config, survey.configProblem ?? "")
        XCTAssertEqual(survey.missing, [lost])
        XCTAssertTrue(survey.report().contains("#\(lost)  shard 1"), survey.report())
    }

    func testStatusSeesARunningShardByItsLock() throws {
        let (c, paths) = try runShards(2, skip: [1])
        var survey = ShardSurvey.read(output: c.output, count: 2, files: [:], config: c)
        XCTAssertEqual(survey.missing, try ShardPlan.make(c, shards: 2).indices(of: 1))
        XCTAssertTrue(survey.inProgress.isEmpty)
        // A writer on shard 1 (what `kvlab run --shard 1/2` holds while it runs).
        let header = try ResultsFile.read(paths[0])
        var prov = header.provenance; prov.shard = "1/2"
        let store = try ResultsStore.open(path: paths[1], provenance: prov, models: header.models, force: false)
        survey = ShardSurvey.read(output: c.output, count: 2, files: [:], config: c)
        let first = try ShardPlan.make(c, shards: 2).indices(of: 1)[0]
        XCTAssertEqual(survey.inProgress, [1: first])
        XCTAssertFalse(survey.missing.contains(first))
        XCTAssertTrue(survey.report().contains("running #\(first)"), survey.report())
        store.close()
        XCTAssertTrue(ShardSurvey.read(output: c.output, count: 2, files: [:], config: c).inProgress.isEmpty, "the lock goes with the writer")
    }

    func testUpdateReplacesOnlyASubsetOfTheInputs() throws {
        let (c, paths) = try runShards(2)
        let out = c.output
        XCTAssertFalse(try MergeCheck.checkUpdate(output: out, inputs: paths))
        try ResultsMerge.merge(paths, into: out, force: false)
        XCTAssertTrue(try MergeCheck.checkUpdate(output: out, inputs: paths), "same runs: may be replaced")
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        XCTAssertThrowsError(try MergeCheck.checkUpdate(output: out, inputs: [paths[0]])) { e in
            XCTAssertTrue(e.localizedDescription.contains("are in no input"), e.localizedDescription)
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before)
    }

    func testExactEqualityIgnoresTimingsOnly() throws {
        let (c, paths) = try runShards(2)
        try ResultsMerge.merge(paths, into: c.output, force: false)
        let whole = dir.appendingPathComponent("whole.h5").path
        var o = RunOptions(); o.output = whole; o.progress = false
        _ = try SweepRunner(config: c, options: o).run { _ in }
        let a = try ResultsFile.read(c.output), b = try ResultsFile.read(whole)
        XCTAssertEqual(ResultsEquality.differences(a, b), [])
        var changed = b
        changed.runs[3].scalars[0].value += 1e-12
        XCTAssertEqual(ResultsEquality.differences(a, changed).count, 1)
        changed = b
        changed.runs.removeLast()
        XCTAssertEqual(ResultsEquality.differences(a, changed), ["#10 only in '\(c.output)'"])
    }
}
