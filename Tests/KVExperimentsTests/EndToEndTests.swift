import Foundation
import XCTest
@testable import KVExperiments

/// A small sweep end to end: config -> runs -> HDF5 -> read back; resume, refusal, shards + merge,
/// and a sweep killed with SIGKILL then rerun.
final class EndToEndTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-e2e-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Synthetic model, two tasks, three policies with a swept budget: 2 x (1 + 2 + 2) = 10 runs.
    func config(output: String, samples: Int = 2, extraPolicy: String = "") -> String {
        """
        name: e2e
        output: \(output)
        models:
          - id: tiny
            synthetic: tiny,layers=2,std=0.15,seed=3
        tasks:
          - task: fidelity
            context: 96
            samples: \(samples)
            eval_tokens: 8
          - task: mqar
            context: 64
            samples: \(samples)
        policies:
          - policy: full
          - policy: streaming_llm
            keep: [0.25, 0.5]
          - policy: snapkv
            keep: [0.25, 0.5]
            window: 8\(extraPolicy)
        """
    }

    func run(_ yaml: String, options: RunOptions = RunOptions()) throws -> SweepSummary {
        var o = options
        o.progress = false
        let c = try ExperimentConfig.parse(yaml, file: "e2e.yaml")
        return try SweepRunner(config: c, options: o).run { _ in }
    }

    func testSweepWritesEveryRunWithProvenanceAndMetrics() throws {
        let out = dir.appendingPathComponent("e2e.h5").path
        let yaml = config(output: out)
        let s = try run(yaml)
        XCTAssertEqual(s.ran, 10); XCTAssertEqual(s.failed, 0)
        let f = try ResultsFile.read(out)
        XCTAssertEqual(f.runs.count, 10)
        XCTAssertEqual(f.runs.map(\.index), Array(1...10))
        XCTAssertEqual(f.provenance.configText, yaml)
        XCTAssertEqual(f.provenance.configHash, try ExperimentConfig.parse(yaml, file: "x").gridHash)
        XCTAssertEqual(f.models.map(\.id), ["tiny"])
        XCTAssertGreaterThan(f.models[0].kvBytesPerToken, 0)
        for r in f.runs {
            XCTAssertEqual(r.status, "ok", r.policyLabel)
            let compression = try XCTUnwrap(r.scalar("compression"))
            if r.policyKind == "full" { XCTAssertEqual(compression, 1) } else { XCTAssertLessThan(compression, 1, r.policyLabel) }
            XCTAssertNotNil(r.scalar("score"))
            XCTAssertEqual(r.perSample.first { $0.name == "compression" }?.values.count, 2)
            XCTAssertEqual(r.perLayerHead.first { $0.name == "kept_fraction" }?.values.count, 2 * 2)
            if r.taskKind == "fidelity" {
                XCTAssertNotNil(r.scalar("kl_mean")); XCTAssertNotNil(r.scalar("attention_recall"))
                if r.policyKind == "full" {
                    XCTAssertEqual(r.scalar("kl_mean")!, 0, accuracy: 1e-12)
                    XCTAssertEqual(r.scalar("attention_recall")!, 1, accuracy: 1e-5)
                } else {
                    XCTAssertLessThan(r.scalar("attention_recall")!, 1)
                }
            }
        }
        // Keeping more costs more memory: the budget sweep is monotone in measured bytes.
        let snap = f.runs.filter { $0.policyKind == "snapkv" && $0.taskKind == "fidelity" }
        XCTAssertLessThan(snap[0].scalar("kv_bytes_stored")!, snap[1].scalar("kv_bytes_stored")!)
        // Rerunning the same config skips every finished run and changes nothing.
        let again = try run(yaml)
        XCTAssertEqual(again.skipped, 10); XCTAssertEqual(again.ran, 0)
        XCTAssertEqual(try ResultsFile.read(out).runs, f.runs)
    }

    func testDifferentConfigIsRefusedUnlessForced() throws {
        let out = dir.appendingPathComponent("e2e.h5").path
        _ = try run(config(output: out, samples: 1))
        let other = config(output: out, samples: 1, extraPolicy: "\n  - policy: knorm\n    keep: 0.5")
        XCTAssertThrowsError(try run(other)) { e in XCTAssertTrue(e.localizedDescription.contains("--force"), e.localizedDescription) }
        XCTAssertEqual(try ResultsFile.read(out).runs.count, 10, "the refused run must not touch the file")
        var o = RunOptions(); o.force = true
        XCTAssertEqual(try run(other, options: o).ran, 12)
        let backups = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".bak") }
        XCTAssertEqual(backups.count, 1, "the old file is kept aside")
    }

    /// `--jobs 2` (samples on two workers, BLAS single-threaded) and `--no-shared-prefill` change
    /// no number: every run equals the serial, shared-prefill run's bit for bit (timings aside).
    func testJobsAndOwnPrefillEqualTheSerialRun() throws {
        let serial = dir.appendingPathComponent("serial.h5").path, parallel = dir.appendingPathComponent("jobs.h5").path
        _ = try run(config(output: serial, samples: 3))
        var o = RunOptions(); o.jobs = 2; o.sharedPrefill = false
        _ = try run(config(output: parallel, samples: 3), options: o)
        let a = try ResultsFile.read(serial), b = try ResultsFile.read(parallel)
        XCTAssertEqual(ResultsEquality.differences(a, b), [])
        XCTAssertEqual(a.runs.filter { $0.infoValue("prefill") == "shared" }.count, 8)   // every policy but full
        XCTAssertTrue(b.runs.allSatisfy { $0.infoValue("prefill") == "own" })
    }

    func testShardsMergedEqualTheUnshardedRun() throws {
        let whole = dir.appendingPathComponent("whole.h5").path
        _ = try run(config(output: whole, samples: 1))
        var shardFiles: [String] = []
        for i in 0..<3 {
            var o = RunOptions(); o.shard = (i, 3)
            let s = try run(config(output: dir.appendingPathComponent("sharded.h5").path, samples: 1), options: o)
            shardFiles.append(s.output)
        }
        let merged = dir.appendingPathComponent("merged.h5").path
        XCTAssertEqual(try ResultsMerge.merge(shardFiles, into: merged, force: false), 10)
        let a = try ResultsFile.read(whole).runs, b = try ResultsFile.read(merged).runs
        XCTAssertEqual(a.map(\.key), b.map(\.key))
        let timing = ResultsEquality.timings
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.scalars.filter { !timing.contains($0.name) }, y.scalars.filter { !timing.contains($0.name) }, x.policyLabel)
        }
        // Shards of another config are refused.
        var o = RunOptions(); o.shard = (0, 2)
        let foreign = try run(config(output: dir.appendingPathComponent("other.h5").path, samples: 2), options: o)
        XCTAssertThrowsError(try ResultsMerge.merge([shardFiles[0], foreign.output], into: dir.appendingPathComponent("bad.h5").path, force: false))
    }

    /// The kvlab binary next to the test bundle (built by `swift build --build-tests`).
    func kvlabBinary() throws -> URL {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [here.appendingPathComponent("kvlab"), here.deletingLastPathComponent().appendingPathComponent("kvlab"),
                          URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../.build/debug/kvlab")]
        guard let bin = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("kvlab binary not found next to the tests (run `swift build --build-tests`): \(candidates.map(\.path))")
            throw CocoaError(.fileNoSuchFile)
        }
        return bin
    }

    func testSweepKilledWithSIGKILLResumesWithEveryRunOnce() throws {
        let out = dir.appendingPathComponent("killed.h5").path
        let cfg = dir.appendingPathComponent("kill.yaml")
        try config(output: out, samples: 6).write(to: cfg, atomically: true, encoding: .utf8)
        let bin = try kvlabBinary()
        var before: [RunRecord] = []
        for attempt in 0..<3 {
            let p = Process()
            p.executableURL = bin
            p.arguments = ["run", cfg.path, "--quiet"]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            // Kill once a few runs are committed (or at a random early moment on later attempts).
            let deadline = Date().addingTimeInterval(60)
            while p.isRunning && Date() < deadline {
                if let f = try? ResultsFile.read(out), f.runs.count >= 2 + attempt * 2 { break }
                usleep(UInt32.random(in: 1_000...20_000))
            }
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            let f = try ResultsFile.read(out)   // must open after any kill
            XCTAssertEqual(Set(f.runs.map(\.index)).count, f.runs.count, "a run appears twice")
            for r in before {   // finished runs survive later kills unchanged
                XCTAssertEqual(f.run(index: r.index), r, "run \(r.index) changed after a kill")
            }
            before = f.runs
        }
        XCTAssertLessThan(before.count, 10, "the sweep finished before it could be killed; make it longer")
        let s = try run(String(contentsOf: cfg, encoding: .utf8))
        XCTAssertEqual(s.skipped, before.count)
        let final = try ResultsFile.read(out)
        XCTAssertEqual(final.runs.map(\.index), Array(1...10))
        for r in before { XCTAssertEqual(final.run(index: r.index), r, "run \(r.index) was rewritten") }
    }
}
