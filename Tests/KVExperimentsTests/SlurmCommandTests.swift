import Foundation
import XCTest
@testable import KVExperiments

/// `kvlab slurm`, `kvlab merge` and `kvlab status` on the command line, with stand-in `sinfo` and
/// `sbatch` scripts in PATH (scripts/slurm_test.sh runs the same against a real Slurm).
final class SlurmCommandTests: XCTestCase {
    var dir: URL!
    var bin: URL!       // PATH for the runs: only the stand-ins put there
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-slurmcli-\(UUID().uuidString)")
        bin = dir.appendingPathComponent("bin")
        try FileManager.default.createDirectory(at: bin, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    var configPath: String { dir.appendingPathComponent("sweep.yaml").path }
    var output: String { dir.appendingPathComponent("out/sweep.h5").path }
    var folder: String { dir.appendingPathComponent("out/sweep.slurm").path }

    func writeConfig(policy: String = "streaming_llm") throws {
        try """
        name: sweep
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
          - policy: \(policy)
            keep: [0.25, 0.5]
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// A stand-in tool: a bash script in `bin`.
    func tool(_ name: String, _ body: String) throws {
        let path = bin.appendingPathComponent(name).path
        try ("#!/bin/bash\nexport PATH=/usr/bin:/bin\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: path)
    }

    func kvlabBinary() throws -> URL {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [here.appendingPathComponent("kvlab"), here.deletingLastPathComponent().appendingPathComponent("kvlab")]
        guard let b = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            XCTFail("kvlab binary not found next to the tests (run `swift build --build-tests`)")
            throw CocoaError(.fileNoSuchFile)
        }
        return b
    }

    /// Runs kvlab with PATH = the stand-ins only; returns (exit status, stdout + stderr).
    @discardableResult
    func kvlab(_ args: String...) throws -> (status: Int32, text: String) { try kvlab(args) }

    func kvlab(_ args: [String]) throws -> (status: Int32, text: String) {
        let p = Process()
        p.executableURL = try kvlabBinary()
        p.arguments = args
        p.environment = ["PATH": bin.path, "HOME": dir.path]
        p.currentDirectoryURL = dir
        let pipe = Pipe()
        p.standardOutput = pipe; p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

    func testWritesThePlanAndBothScriptsWhereSlurmIsMissing() throws {
        try writeConfig()
        let r = try kvlab("slurm", configPath, "--shards", "3")
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertTrue(r.text.contains("jid=$(sbatch --parsable"), r.text)
        let array = try String(contentsOfFile: folder + "/array.sbatch", encoding: .utf8)
        let merge = try String(contentsOfFile: folder + "/merge.sbatch", encoding: .utf8)
        XCTAssertTrue(array.contains("#SBATCH --array=0-2\n"), array)
        XCTAssertTrue(array.contains("#SBATCH --requeue\n"))
        XCTAssertTrue(array.contains("#SBATCH --output=\(folder)/logs/shard%a-%A.log"), array)
        XCTAssertTrue(array.contains("run \(configPath) --shard \"$i/3\" --plan \(folder)/plan.tsv --threads 1 --progress"), array)
        XCTAssertTrue(merge.contains("merge \(output) \(dir.path)/out/sweep.shard0of3.h5 \(dir.path)/out/sweep.shard1of3.h5 \(dir.path)/out/sweep.shard2of3.h5 --plan"), merge)
        XCTAssertTrue(merge.contains("--update"))
        for script in ["array.sbatch", "merge.sbatch"] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/bash")
            p.arguments = ["-n", folder + "/" + script]
            try p.run(); p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "\(script) is not valid bash")
        }
        let config = try ExperimentConfig.load(configPath)
        XCTAssertEqual(try ShardPlan.read(folder + "/plan.tsv", config: config), try ShardPlan.make(config, shards: 3))
        XCTAssertTrue(exists(folder + "/logs"))
        // A later call with another N is refused (its shards would not match), the plan kept.
        let before = try String(contentsOfFile: folder + "/plan.tsv", encoding: .utf8)
        let again = try kvlab("slurm", configPath, "--shards", "2")
        XCTAssertNotEqual(again.status, 0)
        XCTAssertTrue(again.text.contains("already holds a plan of 3 shards"), again.text)
        XCTAssertEqual(try String(contentsOfFile: folder + "/plan.tsv", encoding: .utf8), before)
    }

    func testSubmitWithoutSbatchIsAClearError() throws {
        try writeConfig()
        let r = try kvlab("slurm", configPath, "--shards", "2", "--submit")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.text.contains("'sbatch' not found in PATH"), r.text)
        XCTAssertTrue(r.text.contains("sbatch --dependency=afterany"), "the error says how to submit: \(r.text)")
        XCTAssertTrue(exists(folder + "/array.sbatch"), "everything up to the submission is done")
    }

    func testSubmitRunsSbatchForTheArrayThenTheMergeAfterIt() throws {
        try writeConfig()
        try tool("sinfo", "printf 'debug*\\nlong\\nlong\\n'")
        let calls = dir.appendingPathComponent("sbatch.calls").path
        try tool("sbatch", """
        echo "$*" >> \(calls)
        n=$(wc -l < \(calls)); echo "$((4241 + n));cluster0"
        """)
        let r = try kvlab("slurm", configPath, "--shards", "2", "--partition", "long", "--time", "1-02:00:00", "--mem", "2G",
                          "--account", "lab", "--cpus-per-task", "2", "--extra", "--qos=high --constraint avx2", "--submit")
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertTrue(r.text.contains("submitted array job 4242 (2 tasks) and merge job 4243 (afterany:4242)"), r.text)
        let lines = try String(contentsOfFile: calls, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines, ["--parsable \(folder)/array.sbatch", "--parsable --dependency=afterany:4242 \(folder)/merge.sbatch"])
        let array = try String(contentsOfFile: folder + "/array.sbatch", encoding: .utf8)
        for d in ["--partition=long", "--time=1-02:00:00", "--mem=2G", "--account=lab", "--qos=high", "--constraint avx2", "--cpus-per-task=2"] {
            XCTAssertTrue(array.contains("#SBATCH \(d)\n"), "\(d) missing:\n\(array)")
        }
        XCTAssertTrue(array.contains("--progress") && array.contains("--threads 2"), array)
    }

    func testBadInputIsAClearErrorAndWritesNothing() throws {
        try writeConfig()
        try tool("sinfo", "printf 'debug*\\n'")
        try tool("sbatch", "echo submitted >> \(dir.path)/sbatch.calls; echo 1")
        let cases: [([String], String)] = [
            (["--shards", "9"], "has only 6 grid points"),
            (["--shards", "2", "--partition", "gpu"], "--partition 'gpu': this cluster has no such partition (sinfo lists: debug)"),
            (["--shards", "2", "--time", "soon"], "--time 'soon': expected minutes, HH:MM:SS or D-HH:MM:SS"),
            (["--shards", "2", "--mem", "lots"], "--mem 'lots'"),
            (["--shards", "2", "--extra", "qos=high"], "--extra 'qos=high'"),
        ]
        for (args, message) in cases {
            let r = try kvlab(["slurm", configPath] + args + ["--submit"])
            XCTAssertNotEqual(r.status, 0, args.joined(separator: " "))
            XCTAssertTrue(r.text.contains(message), "\(args): \(r.text)")
        }
        try writeConfig(policy: "streaming_lm")
        let r = try kvlab("slurm", configPath, "--shards", "2", "--submit")
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.text.contains("sweep.yaml:13:") && r.text.contains("unknown policy 'streaming_lm'"), r.text)
        XCTAssertFalse(exists(folder), "a refused call wrote \(folder)")
        XCTAssertFalse(exists(dir.path + "/sbatch.calls"), "a refused call submitted")
        // `kvlab run` refuses an N larger than the grid the same way.
        try writeConfig()
        let run = try kvlab("run", configPath, "--shard", "0/9")
        XCTAssertNotEqual(run.status, 0)
        XCTAssertTrue(run.text.contains("has only 6 grid points"), run.text)
    }

    func testMergeRefusesAMissingShardAndStatusNamesItsPoints() throws {
        try writeConfig()
        let config = try ExperimentConfig.load(configPath)
        var shards: [String] = []
        for i in [0, 2] {
            var o = RunOptions(); o.shard = (i, 3); o.progress = false
            shards.append(try SweepRunner(config: config, options: o).run { _ in }.output)
        }
        let merged = dir.appendingPathComponent("merged.h5").path
        let r = try kvlab("merge", merged, shards[0], shards[1])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.text.contains("missing shard 1/3") && r.text.contains("sweep.shard1of3.h5 not among the inputs"), r.text)
        XCTAssertFalse(exists(merged))
        let partial = try kvlab("merge", merged, shards[0], shards[1], "--partial")
        XCTAssertEqual(partial.status, 0, partial.text)
        // An existing output is kept unless --update finds it a subset of the inputs.
        let again = try kvlab("merge", merged, shards[0], shards[1], "--partial")
        XCTAssertNotEqual(again.status, 0)
        XCTAssertEqual(try kvlab("merge", merged, shards[0], shards[1], "--partial", "--update").status, 0)
        let status = try kvlab("status", configPath)
        XCTAssertEqual(status.status, 0, status.text)
        let plan = try ShardPlan.make(config, shards: 3)
        XCTAssertTrue(status.text.contains("1/3"), status.text)
        for i in plan.indices(of: 1) { XCTAssertTrue(status.text.contains("#\(i)  shard 1"), "#\(i) not listed missing: \(status.text)") }
        let byFolder = try kvlab("status", dir.appendingPathComponent("out").path)
        XCTAssertEqual(byFolder.status, 0, byFolder.text)
        XCTAssertTrue(byFolder.text.contains("6 grid points, 3 shards"), byFolder.text)
    }
}
