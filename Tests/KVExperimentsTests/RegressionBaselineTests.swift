import Foundation
import XCTest
import KVCacheCore
@testable import KVExperiments
import KVPolicies

/// Reruns experiments/regression.yaml and compares it with results/baselines/regression.h5
/// through the same code path as `kvlab compare`; an injected fault must be caught.
final class RegressionBaselineTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-regress-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // Model paths in the config are relative to the repository root.
        FileManager.default.changeCurrentDirectoryPath(Self.root.path)
    }
    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    func sweep(onlyPolicy kind: String? = nil, replacing: (PolicySpec) -> PolicySpec = { $0 }) throws -> ResultsFile {
        var config = try ExperimentConfig.load("experiments/regression.yaml")
        if let kind { config.policies = config.policies.filter { $0.kind == kind } }
        config.policies = config.policies.map(replacing)
        var o = RunOptions()
        o.output = dir.appendingPathComponent("new.h5").path
        o.progress = false
        _ = try SweepRunner(config: config, options: o).run { _ in }
        return try ResultsFile.read(o.output!)
    }

    func baseline() throws -> ResultsFile { try ResultsFile.read("results/baselines/regression.h5", requireStamp: true) }   // as `kvlab compare`

    /// The sweep (shared prefill, serial) matches the baseline, bit for bit. (That `--no-shared-prefill`
    /// and `--jobs 2` change no number: EndToEndTests.testJobsAndOwnPrefillEqualTheSerialRun, and
    /// PrefillReplayTests for every registered policy; a second regression sweep here would double
    /// the suite's slowest test.)
    func testRegressionSweepMatchesTheBaseline() throws {
        let shared = try sweep()
        let report = ResultsCompare.compare(new: shared, baseline: try baseline())
        XCTAssertTrue(report.passed, report.text())
        XCTAssertEqual(report.compared, try baseline().runs.count)
        // Bit for bit, too: every number the baseline holds. It predates the generated-token count
        // and the per-sample generated texts (`kvlab compare --exact ... --ignore generated_tokens --ignore generated`).
        XCTAssertEqual(ResultsEquality.differences(shared, try baseline(), ignoring: ResultsEquality.timings.union(["generated_tokens", "generated"])), [])
        let sharing = shared.runs.filter { $0.infoValue("prefill") == "shared" }
        XCTAssertEqual(sharing.count, shared.runs.filter { !["full", "head_pooling", "cla"].contains($0.policyKind) }.count)
    }

    func testInjectedQuestFaultIsCaught() throws {
        let new = try sweep(onlyPolicy: "quest") { spec in spec.config(as: Quest.Config.self).map { PolicySpec(QuestWithoutLastPage(quest: $0)) } ?? spec }
        var base = try baseline()
        base.runs = base.runs.filter { $0.policyKind == "quest" }
        let report = ResultsCompare.compare(new: new, baseline: base)
        XCTAssertFalse(report.passed)
        XCTAssertFalse(report.regressions.isEmpty)
        XCTAssertTrue(report.regressions.allSatisfy { $0.policy.hasPrefix("quest(") })
        XCTAssertTrue(report.text().contains("REGRESSIONS"))
        XCTAssertTrue(report.regressions.contains { $0.metric == "score" || $0.metric == "kl_mean" || $0.metric == "top1_agreement" },
                      report.text())
    }

    func testMissingRunsAndSchemaMismatchFail() throws {
        var base = try baseline()
        var new = base
        new.runs.removeLast()
        XCTAssertEqual(ResultsCompare.compare(new: new, baseline: base).missing.count, 1)
        new = base
        new.provenance.schemaVersion += 1
        XCTAssertNotNil(ResultsCompare.compare(new: new, baseline: base).schemaMismatch)
        // A better score is an improvement, not a failure; a worse one beyond tolerance fails.
        new = base
        let i = try XCTUnwrap(new.runs.firstIndex { $0.policyKind == "streaming_llm" })
        let s = try XCTUnwrap(new.runs[i].scalars.firstIndex { $0.name == "score" })
        new.runs[i].scalars[s].value += 0.25
        var r = ResultsCompare.compare(new: new, baseline: base)
        XCTAssertTrue(r.passed); XCTAssertEqual(r.improvements.count, 1)
        new.runs[i].scalars[s].value -= 0.5
        r = ResultsCompare.compare(new: new, baseline: base)
        XCTAssertFalse(r.passed); XCTAssertEqual(r.regressions.first?.metric, "score")
        var loose = ResultsCompare.Options(); loose.tolerances["score"] = .init(abs: 0.3)
        XCTAssertTrue(ResultsCompare.compare(new: new, baseline: base, options: loose).passed)
        // Issue 16: an empty baseline compares nothing, which is not a pass; nor is an empty new file.
        let full = base
        base.runs = []
        r = ResultsCompare.compare(new: new, baseline: base)
        XCTAssertFalse(r.passed)
        XCTAssertTrue(r.text().contains("has no runs"), r.text())
        new.runs = []
        XCTAssertFalse(ResultsCompare.compare(new: new, baseline: full).passed)
    }

    /// Issue 16: a NaN score, a NaN KL or -inf bytes counted as improvements and passed.
    func testNonFiniteValuesFailTheComparison() throws {
        let base = try baseline()
        let i = try XCTUnwrap(base.runs.firstIndex { $0.policyKind == "streaming_llm" && $0.scalar("kl_mean") != nil })
        for (metric, value) in [("score", Double.nan), ("kl_mean", .nan), ("kv_bytes_stored", -.infinity), ("compression", .infinity)] {
            var new = base
            let m = try XCTUnwrap(new.runs[i].scalars.firstIndex { $0.name == metric }, metric)
            new.runs[i].scalars[m].value = value
            let r = ResultsCompare.compare(new: new, baseline: base)
            XCTAssertFalse(r.passed, "\(metric) = \(value) passed")
            XCTAssertEqual(r.regressions.map(\.metric), [metric])
            XCTAssertTrue(r.improvements.isEmpty)
            // Nor does a baseline that holds one.
            XCTAssertFalse(ResultsCompare.compare(new: base, baseline: new).passed, "a \(metric) = \(value) baseline passed")
        }
    }
}

/// Quest that forgets its always-read last page: a fault the regression comparison must catch. It
/// has Quest's name and parameters, so its runs have Quest's keys.
struct QuestWithoutLastPage: PolicyConfig {
    var quest: Quest.Config
    static let descriptor = PolicyDescriptor<QuestWithoutLastPage>(
        name: Quest.Config.descriptor.name, family: .selection, summary: "Quest without its last page (a test fault)",
        defaults: QuestWithoutLastPage(quest: Quest.Config.descriptor.defaults),
        parameters: [PolicyParameter(keys: [], type: "", help: "Quest's", read: { _, _ in },
                                     write: { c, canonical in c.quest.parameters(canonical: canonical) })],
        sample: "", examples: { _, _ in [] })
    func make() throws -> CachePolicy { DropLastPage(try Quest(quest)) }

    final class DropLastPage: CachePolicy {
        let inner: Quest
        init(_ inner: Quest) { self.inner = inner }
        var name: String { inner.name }
        var layout: StorageLayout { inner.layout }
        var metadataBytes: Int { inner.metadataBytes }
        func bind(shape: CacheShape) { inner.bind(shape: shape) }
        func reset() { inner.reset() }
        func didAppend(_ step: LayerStep) { inner.didAppend(step) }
        func didRetain(layer: Int, head: Int, kept: [Int]) { inner.didRetain(layer: layer, head: head, kept: kept) }
        func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
            guard let chosen = inner.select(step, head: head, candidates: candidates) else { return nil }
            let S = inner.pageSize, lastPage = (step.stores[head].count - 1) / S
            return chosen.filter { Int($0) / S != lastPage }
        }
    }
}
