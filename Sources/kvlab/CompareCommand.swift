import ArgumentParser
import Foundation
import KVExperiments

struct CompareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Compare a results file with a baseline; exit 1 on any regression, missing run or schema mismatch.",
        discussion: """
        Runs are matched by key (model, task, policy and parameters). A metric regresses when it moves \
        in its worse direction (score down, bytes or KL up; unknown metrics: any change) by more than \
        abs + rel x |baseline|. Default tolerance: abs 1e-6 (float32 rounding of metrics near 0), rel 1e-6; timings are ignored. \
        Both files must carry KVLab's integrity stamp (a file without one is refused, naming it; \
        KVLAB_IGNORE_CHECKSUM=1 compares a trusted older or foreign file).
        """)

    @Argument(help: "The new results file.") var new: String
    @Argument(help: "The baseline results file.") var baseline: String
    @Option(name: .customLong("tol"), help: "Tolerance METRIC=ABS[,REL] (repeatable), e.g. --tol score=0.05.")
    var tolerances: [String] = []
    @Option(name: .customLong("ignore"), help: "Metric, per-sample series or per-sample text (generated) to skip (repeatable).")
    var ignore: [String] = []
    @Flag(help: "Exact equality instead: the same runs, every number bit for bit (timings and --ignore aside); exit 1 on any difference.")
    var exact = false

    func run() throws {
        if exact {
            let diffs = ResultsEquality.differences(try ResultsFile.read(new, requireStamp: true), try ResultsFile.read(baseline, requireStamp: true),
                                                    ignoring: ResultsEquality.timings.union(ignore))
            if diffs.isEmpty { print("equal: the same runs, bit for bit (timings aside)"); return }
            print("\(diffs.count) differences:\n  " + diffs.prefix(50).joined(separator: "\n  "))
            throw ExitCode(1)
        }
        var o = ResultsCompare.Options()
        for t in tolerances {
            let parts = t.split(separator: "=", maxSplits: 1).map(String.init)
            let nums = parts.count == 2 ? parts[1].split(separator: ",").compactMap { Double($0) } : []
            guard parts.count == 2, (1...2).contains(nums.count) else {
                throw ValidationError("--tol: expected METRIC=ABS[,REL], got '\(t)'")
            }
            o.tolerances[parts[0]] = .init(abs: nums[0], rel: nums.count > 1 ? nums[1] : 0)
        }
        o.ignored.formUnion(ignore)
        let report = ResultsCompare.compare(new: try ResultsFile.read(new, requireStamp: true), baseline: try ResultsFile.read(baseline, requireStamp: true), options: o)
        print(report.text())
        if !report.passed { throw ExitCode(1) }
    }
}
