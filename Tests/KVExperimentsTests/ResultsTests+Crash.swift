// The crash and cost tests of the results store: kill -9 of a writer at random moments, and the
// cost of a commit at 200 runs. Part of ResultsTests (so `--filter ResultsTests` runs them).
import Foundation
import XCTest
import KVHDF5
@testable import KVExperiments
#if canImport(Glibc)
import Glibc
#endif

extension ResultsTests {
    // MARK: - Cost

    /// The cost of a commit at 180-200 small runs (one commit per run), and of a compaction at 200.
    /// Runs 1-180 go in with a few batches to keep the test fast (each commit waits for an fsync).
    func testCommitCostAt200Runs() throws {
        let p = path("cost.h5")
        let store = try openStore(p)
        func threadCPU() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        func timed(_ body: () throws -> Void) rethrows -> (wall: Double, cpu: Double) {
            let start = DispatchTime.now().uptimeNanoseconds, startCPU = threadCPU()
            try body()
            return (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9, threadCPU() - startCPU)
        }
        for batch in stride(from: 1, through: 180, by: 30) {
            try store.commitBatch((batch ..< batch + 30).map { Self.run($0, withRetention: false, samples: 8) })
        }
        try store.compact()
        var commits: [(wall: Double, cpu: Double)] = []
        for i in 181 ... 200 { commits.append(try timed { try store.commit(Self.run(i, withRetention: false, samples: 8)) }) }
        let compaction = try timed { try store.compact() }
        let wall = commits.map(\.wall).reduce(0, +) / 20, cpu = commits.map(\.cpu).reduce(0, +) / 20
        func ms(_ t: Double) -> String { String(format: "%.1f ms", t * 1000) }
        let size = (try FileManager.default.attributesOfItem(atPath: p)[.size] as? NSNumber)?.intValue ?? 0
        print("ResultsStore commit cost at 181-200 runs: \(ms(wall)) wall, \(ms(cpu)) CPU per commit " +
              "(slowest \(ms(commits.map(\.wall).max()!))); compaction at 200 runs: \(ms(compaction.wall)) wall, " +
              "\(ms(compaction.cpu)) CPU; file \(size / 1024) KiB")
        XCTAssertLessThan(wall, 0.25, "a commit at 200 runs takes \(ms(wall))")
        store.close()
        XCTAssertEqual(try ResultsFile.read(p).runs.count, 200)
    }

    // MARK: - kill -9

    static let writerEnv = "KVLAB_RESULTS_KILL_WRITER"
    static let readyMarker = "KVLAB-RESULTS-WRITER-READY"

    /// The run the kill-test writer commits at `index` (deterministic, so the parent can check it).
    static func killRun(_ index: Int) -> RunRecord { run(index, samples: 6) }

    /// The writer role of `testKillDuringCommitsLeavesAValidPrefix`: does nothing unless started
    /// by it (with KVLAB_RESULTS_KILL_WRITER set); then commits runs 1, 2, ... until killed.
    func testKillWriterChild() throws {
        guard let target = ProcessInfo.processInfo.environment[Self.writerEnv] else { return }
        let store = try ResultsStore.open(path: target, provenance: Self.provenance(), models: Self.models, force: false)
        if ProcessInfo.processInfo.environment[Self.writerEnv + "_REWRITE"] != nil { store.commitMode = .rewriteEveryCommit }
        FileHandle.standardOutput.write(Data("\n\(Self.readyMarker)\n".utf8))
        for index in 1 ... 400 where !store.isFinished(index: index, key: Self.killRun(index).key) {
            try store.commit(Self.killRun(index))
        }
    }

    func testKillDuringCommitsLeavesAValidPrefix() throws {
        #if !os(Linux)
        throw XCTSkip("runs the test binary itself through /proc/self/exe")
        #endif
        let target = path("killed.h5")
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var committed = 0
        var stamps: [Int: String] = [:]
        var leftovers = 0
        var rng = SystemRandomNumberGenerator()
        for round in 0 ..< 10 {
            let process = Process()
            process.executableURL = executable
            process.arguments = ["KVExperimentsTests.ResultsTests/testKillWriterChild"]
            var environment = ProcessInfo.processInfo.environment
            environment[Self.writerEnv] = target
            if round % 2 == 1 { environment[Self.writerEnv + "_REWRITE"] = "1" }   // the compaction path
            process.environment = environment
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            let ready = DispatchSemaphore(value: 0)
            let buffer = LockedText()
            pipe.fileHandleForReading.readabilityHandler = { handle in
                let data = handle.availableData
                if data.isEmpty { handle.readabilityHandler = nil; ready.signal(); return }
                if buffer.append(String(decoding: data, as: UTF8.self), watching: Self.readyMarker) { ready.signal() }
            }
            try process.run()
            if round % 3 == 2 {
                usleep(UInt32.random(in: 0 ... 150_000, using: &rng))       // anywhere, start-up included
            } else {
                XCTAssertEqual(ready.wait(timeout: .now() + 30), .success, "writer did not start")
                usleep(UInt32.random(in: 0 ... 100_000, using: &rng))
            }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            pipe.fileHandleForReading.readabilityHandler = nil
            XCTAssertEqual(process.terminationReason, .uncaughtSignal, "round \(round): the writer ended on its own")

            guard FileManager.default.fileExists(atPath: target) else {
                XCTAssertEqual(committed, 0, "round \(round): the file vanished"); continue
            }
            leftovers += ((try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [])
                .filter { $0.contains(".tmp-") }.count
            let file = try ResultsFile.read(target)        // opens after every kill
            let indices = file.runs.map(\.index)
            XCTAssertEqual(indices, Array(0 ..< indices.count).map { $0 + 1 }, "round \(round): not a prefix, each once")
            XCTAssertGreaterThanOrEqual(indices.count, committed, "round \(round): finished runs were lost")
            for run in file.runs { XCTAssertEqual(run, Self.killRun(run.index), "round \(round): run \(run.index) differs") }
            let h5 = try H5File.open(target)
            XCTAssertEqual(try h5.root.group("summary").readInt64s("index").values.map(Int.init), indices)
            for index in indices {
                let stamp = try h5.root.group("runs/\(ResultsSchema.runName(index))").stringAttribute("committed")
                if let old = stamps[index] { XCTAssertEqual(stamp, old, "run \(index) was rewritten") }
                stamps[index] = stamp
            }
            try h5.close()
            committed = indices.count
        }
        print("kill test: \(committed) runs committed over 10 kills; \(leftovers) temporary files seen after kills")
        XCTAssertGreaterThan(committed, 0, "the writer never committed a run before being killed")
        // The next writer resumes, and removes the temporary files killed writers left.
        let store = try openStore(target)
        XCTAssertEqual(store.finished.count, committed)
        store.close()
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.contains(".tmp-") }, [])
    }
}

/// Child output collected on a background queue.
private final class LockedText: @unchecked Sendable {
    private var text = ""
    private let lock = NSLock()
    /// Appends `piece`; true the first time `marker` is seen.
    func append(_ piece: String, watching marker: String) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let had = text.contains(marker)
        text += piece
        return !had && text.contains(marker)
    }
}
