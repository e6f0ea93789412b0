import Foundation
import XCTest
@testable import KVExperiments
@testable import KVPolicies

/// What a run records besides its score (issue 13 items 3, 7, 9-12): the budget as written, the
/// named setup, kept fractions, pooled perplexity, intervals, wall time, text provenance.
final class RunFiguresTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-figures-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        FileManager.default.changeCurrentDirectoryPath(Self.root.path)     // models/ paths are relative
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func sweep(_ yaml: String) throws -> ResultsFile {
        let out = dir.appendingPathComponent("out.h5").path
        let c = try ExperimentConfig.parse("output: \(out)\n" + yaml, file: "figures.yaml")
        var o = RunOptions(); o.progress = false
        let s = try SweepRunner(config: c, options: o).run { _ in }
        XCTAssertEqual(s.failed, 0)
        return try ResultsFile.read(out)
    }

    func run(_ f: ResultsFile, _ prefix: String, task: String? = nil) throws -> RunRecord {
        try XCTUnwrap(f.runs.first { $0.policyLabel.hasPrefix(prefix) && (task == nil || $0.taskKind == task) }, prefix)
    }

    func testBudgetIsRecordedAsWrittenAndKeysStayCanonical() throws {
        let f = try sweep("""
            models: [{id: tiny, synthetic: "tiny,layers=4,std=0.15,seed=3"}]
            tasks: [{task: fidelity, context: 96, samples: 2, eval_tokens: 8}]
            policies:
              - policy: full
              - {policy: streaming_llm, keep: 0.125}
              - {policy: snapkv, compression_ratio: 0.75, window: 8}
              - {policy: h2o, budget: 48}
              - {policy: oracle_topk, k_fraction: 0.25}
              - {policy: kivi, bits: 2, residual: 32}
              - {policy: cla, share_factor: 2}
              - stack: [{policy: tova, keep: 0.5}, {policy: kivi, bits: 4, residual: 32}]
              - {policy: minicache, retain_fraction: 0.05}
            """)
        let expected: [(String, String, Double)] = [("streaming_llm", "keep", 0.125), ("snapkv", "compression_ratio", 0.75),
                                                    ("h2o", "budget", 48), ("oracle_topk", "k_fraction", 0.25), ("tova", "keep", 0.5)]
        for (prefix, kind, value) in expected {
            let r = try run(f, prefix)
            XCTAssertEqual(r.infoValue("budget_kind"), kind, prefix)
            XCTAssertEqual(r.scalar("budget_value"), value, prefix)
        }
        let s = try run(f, "streaming_llm")
        XCTAssertTrue(s.policyLabel.contains("keep=0.125"), s.policyLabel)
        XCTAssertFalse(s.policyLabel.contains("compression_ratio"), s.policyLabel)
        XCTAssertTrue(s.key.contains("compression_ratio=0.875"), "keys stay canonical: \(s.key)")
        XCTAssertEqual(s.policyParams, #"{"keep": 0.125, "sinks": 4, "schedule": "always"}"#)
        for prefix in ["full", "kivi", "cla"] {
            let r = try run(f, prefix)
            XCTAssertEqual(r.infoValue("budget_kind"), "", prefix)
            XCTAssertTrue(r.scalar("budget_value")!.isNaN, prefix)
        }
        // Every run: the score's sample count and interval, its wall time, the suffix mode.
        for r in f.runs {
            XCTAssertEqual(r.scalar("score_n"), 2, r.policyLabel)
            let score = r.scalar("score")!, lo = r.scalar("score_lo")!, hi = r.scalar("score_hi")!
            XCTAssertTrue(lo <= score && score <= hi, "\(r.policyLabel): \(lo) <= \(score) <= \(hi)")
            XCTAssertGreaterThan(r.scalar("run_wall_s")!, 0)
            XCTAssertEqual(r.infoValue("suffix"), "decode")
        }
        // CLA: the layers that share store nothing (kept 0), the others everything.
        let cla = try XCTUnwrap(try run(f, "cla").perLayerHead.first { $0.name == "kept_fraction" })
        XCTAssertEqual(cla.values, [1, 1, 0, 0, 1, 1, 0, 0])
        // KIVI holds fewer bytes than it holds tokens.
        let kivi = try XCTUnwrap(try run(f, "kivi").perLayerHead.first { $0.name == "kept_fraction" })
        XCTAssertTrue(kivi.values.allSatisfy { $0 > 0.3 && $0 < 0.9 }, "\(kivi.values)")
        // MiniCache merges layers 2 and 3 (of 4): they hold less than the full cache's bytes, the
        // lower layers all of them.
        let mini = try XCTUnwrap(try run(f, "minicache").perLayerHead.first { $0.name == "kept_fraction" })
        XCTAssertEqual(Array(mini.values[0..<4]), [1, 1, 1, 1])
        XCTAssertTrue(mini.values[4...].allSatisfy { $0 > 0.4 && $0 < 0.9 }, "\(mini.values)")
        // kvlab report shows the setup and every score with its interval and sample count by default.
        let header = try ResultsReport.table(f).split(separator: "\n")[0].split(separator: " ").map(String.init)
        for column in ["setup", "score", "score_lo", "score_hi", "score_n", "run_wall_s"] { XCTAssertTrue(header.contains(column), column) }
        // The summary carries the text columns.
        XCTAssertTrue(ResultsReport.columns(f).starts(with: ResultsSchema.fixedColumns + ["budget_kind", "setup", "suffix", "text_source"]))
    }

    func testSetupsAreNamedAndRecorded() throws {
        let base = "models: [{id: tiny, synthetic: \"tiny,layers=2,std=0.15,seed=3\"}]\ntasks: [{task: fidelity, context: 96, samples: 1, eval_tokens: 4}]\n"
        let c = try ExperimentConfig.parse(base + """
            policies:
              - {policy: quest, budget: 32, setup: paper}
              - {policy: quest, budget: 32}
              - {policy: quest, budget: 32, dense_layers: 0}
              - {policy: quest, budget: 32, setup: paper, page_size: 8}
              - {policy: oracle_topk, top_k: 32, setup: [paper, kvlab]}
            """, file: "s.yaml")
        XCTAssertEqual(c.policies.map { PolicySetup.name(of: $0) }, ["paper", "kvlab", "custom", "custom", "paper", "kvlab"])
        let quest = try XCTUnwrap(c.policies[0].config(as: Quest.Config.self))
        XCTAssertEqual(quest.pageSize, 16); XCTAssertEqual(quest.denseLayers, 2); XCTAssertEqual(quest.gqa, .queryHead)
        // Loki's setups: paper = the reference protocol (query_head, prefill+decode), kvlab = group-summed, decode only.
        let cal = FileManager.default.temporaryDirectory.appendingPathComponent("setup-\(UUID().uuidString).h5").path
        defer { try? FileManager.default.removeItem(atPath: cal) }
        try LokiCalibration.identity(layers: 2, kvHeads: 2, headDim: 16).save(to: cal)
        let l = try ExperimentConfig.parse(base + "policies:\n  - {policy: loki, calibration: \(cal), setup: [paper, kvlab]}\n", file: "l.yaml")
        XCTAssertEqual(l.policies.map { PolicySetup.name(of: $0) }, ["paper", "kvlab"])
        let paper = try XCTUnwrap(l.policies[0].config(as: Loki.Config.self)), kvlab = try XCTUnwrap(l.policies[1].config(as: Loki.Config.self))
        XCTAssertEqual(paper.gqa, .queryHead); XCTAssertEqual(paper.phases, .prefillAndDecode)
        XCTAssertEqual(kvlab.gqa, .kvGroup); XCTAssertEqual(kvlab.phases, .decode)
        XCTAssertThrowsError(try ExperimentConfig.parse(base + "policies:\n  - {policy: snapkv, keep: 0.5, setup: paper}\n", file: "x.yaml"))
        XCTAssertThrowsError(try ExperimentConfig.parse(base + "policies:\n  - {policy: quest, budget: 32, setup: best}\n", file: "x.yaml")) {
            XCTAssertTrue($0.localizedDescription.contains("expected one of kvlab, paper"), $0.localizedDescription)
        }
    }

    func testDecodeBudgetOptionAndForcedTokenWarnings() throws {
        let base = "models: [{id: tiny, synthetic: tiny}]\ntasks: [{task: fidelity, context: [512, 1024], samples: 1}]\n"
        let c = try ExperimentConfig.parse(base + """
            policies:
              - {policy: snapkv, keep: [0.125, 0.5]}
              - {policy: streaming_llm, budget: 16, sinks: 8, schedule: always, decode_budget: context}
              - {policy: h2o, keep: 0.125}
            """, file: "w.yaml")
        let stream = try XCTUnwrap(c.policies[2].config(as: StreamingLLM.Config.self))
        XCTAssertEqual(stream.schedule, EvictionSchedule(.always, decodeBudget: .context))
        XCTAssertTrue(c.policies[2].label.contains("schedule=always,decode_budget=context"), c.policies[2].label)
        let w = c.warnings
        XCTAssertEqual(w.count, 2, "\(w)")
        XCTAssertTrue(w[0].contains("snapkv(keep=0.125") && w[0].contains("window (64 tokens) uses 50% of the budget of 128 tokens at context 1024"), w[0])
        XCTAssertTrue(w[1].contains("sinks (8 tokens) use 50% of the budget of 16 tokens"), w[1])
        XCTAssertThrowsError(try ExperimentConfig.parse(base + "policies:\n  - {policy: tova, keep: 0.5, schedule: prefill, decode_budget: prompt}\n",
                                                        file: "d.yaml")) {
            XCTAssertTrue($0.localizedDescription.contains("decode_budget applies to decode-time eviction"), $0.localizedDescription)
        }
    }

    /// One sweep on the shipped model for the two tests below (hashing its weights once).
    static var retrievalSweep: ResultsFile?
    func retrieval() throws -> ResultsFile {
        if let f = Self.retrievalSweep { return f }
        let f = try sweep("""
            models: [{id: r, path: models/kvlab-retrieval}]
            tasks:
              - {task: passkey, context: 256, samples: 1}
              - {task: perplexity, context: 128, samples: 3, eval_tokens: 16, text_file: "debian:licenses"}
            policies:
              - policy: full
              - {policy: streaming_llm, keep: 0.125, schedule: [prefill, always]}
            """)
        Self.retrievalSweep = f
        return f
    }

    /// Passkey on the shipped model (the question fed through the decode path): what fraction of the
    /// compressed context and of all tokens a policy holds, as separate figures.
    func testContextKeptAndStoredFractions() throws {
        let f = try retrieval()
        let full = try run(f, "full", task: "passkey"), pre = try run(f, "streaming_llm(keep=0.125,sinks=4,schedule=prefill", task: "passkey")
        let always = try run(f, "streaming_llm(keep=0.125,sinks=4,schedule=always", task: "passkey")
        XCTAssertEqual(full.scalar("context_kept_fraction"), 1)
        XCTAssertEqual(full.scalar("stored_fraction"), 1)
        let ctx = try XCTUnwrap(pre.perSample.first { $0.name == "tokens_seen" })
        for (sample, kept) in try XCTUnwrap(pre.perSample.first { $0.name == "context_kept_fraction" }).values.enumerated() {
            // The context is the prompt minus the question; int(T * 0.125) of it is kept.
            XCTAssertGreaterThan(kept, 0.11, "sample \(sample)"); XCTAssertLessThanOrEqual(kept, 0.125)
            XCTAssertGreaterThan(ctx.values[sample], 256)
        }
        // Prefill only: the question and the generated tokens are held on top of the budget, so the
        // stored fraction is above the kept fraction; always: the cache stays at the budget, so the
        // question (fed through decode) displaced context and the stored fraction is the lowest.
        XCTAssertGreaterThan(pre.scalar("stored_fraction")!, pre.scalar("context_kept_fraction")!)
        XCTAssertLessThan(always.scalar("context_kept_fraction")!, pre.scalar("context_kept_fraction")!)
        XCTAssertLessThan(always.scalar("stored_fraction")!, pre.scalar("stored_fraction")!)
        // The peak is the high-water mark: above what the policy holds at the end.
        XCTAssertGreaterThan(pre.scalar("kv_bytes_stored_peak")!, pre.scalar("kv_bytes_stored")!)
        XCTAssertEqual(full.scalar("memory_fraction"), 1)
        XCTAssertLessThan(pre.scalar("memory_fraction")!, 0.5)
    }

    /// PPL = exp(mean NLL over every evaluated token of every window), not the mean of the windows'
    /// perplexities; the windows' values stay per sample. The score is -log(PPL / PPL_full).
    func testPerplexityPoolsEveryTokenAndRecordsTheTextFile() throws {
        let r = try run(try retrieval(), "streaming_llm(keep=0.125,sinks=4,schedule=always", task: "perplexity")
        let nll = try XCTUnwrap(r.perSample.first { $0.name == "nll_mean" }).values
        let nllFull = try XCTUnwrap(r.perSample.first { $0.name == "nll_full_mean" }).values
        let windows = try XCTUnwrap(r.perSample.first { $0.name == "ppl" }).values
        XCTAssertEqual(windows.count, 3)
        for (w, n) in zip(windows, nll) { XCTAssertEqual(w, exp(n), accuracy: 1e-9 * w) }
        let pooled = exp(nll.reduce(0, +) / 3)
        XCTAssertEqual(r.scalar("ppl")!, pooled, accuracy: 1e-9 * pooled)
        XCTAssertEqual(r.scalar("ppl_full")!, exp(nllFull.reduce(0, +) / 3), accuracy: 1e-9 * pooled)
        let meanOfWindows = windows.reduce(0, +) / 3
        XCTAssertGreaterThan(abs(meanOfWindows - pooled), 1e-6 * pooled, "windows differ, so the two averages differ")
        XCTAssertEqual(r.scalar("score")!, -log(r.scalar("ppl")! / r.scalar("ppl_full")!), accuracy: 1e-9)
        let t = Intervals.t(zip(nll, nllFull).map { -($0 - $1) })
        XCTAssertEqual(r.scalar("score_lo")!, t.lo, accuracy: 1e-12)
        XCTAssertTrue(r.scalar("ppl_lo")! < r.scalar("ppl")! && r.scalar("ppl")! < r.scalar("ppl_hi")!)
        // Provenance of the text: the Debian corpus, its files and the SHA-256 of the text used.
        let corpus = try RealText.load("debian:licenses")
        let source = try XCTUnwrap(r.infoValue("text_source"))
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(source.utf8)) as? [String: Any])
        XCTAssertEqual(object["name"] as? String, "debian:licenses")
        XCTAssertEqual(object["package"] as? String, "base-files")
        XCTAssertEqual(object["files"] as? [String], corpus.files)
        XCTAssertEqual(object["sha256"] as? String, corpus.sha256)
        // A user's file: its path and the SHA-256 of its bytes.
        let file = dir.appendingPathComponent("corpus.txt").path
        try "Some words of a user's own text.\n".write(toFile: file, atomically: true, encoding: .utf8)
        let user = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try RunFractions.textSource(file).utf8)) as? [String: String])
        XCTAssertEqual(user, ["path": file, "sha256": try SHA256.hex(file: file)])
    }
}
