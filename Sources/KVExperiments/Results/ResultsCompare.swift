import Foundation

/// Regression check of a results file against a baseline: runs matched by key (model, task,
/// policy and its parameters), each metric compared with a tolerance in its "worse" direction.
/// `kvlab compare` and the baseline test in `swift test` both call `ResultsCompare.compare`.
public enum ResultsCompare {
    /// Allowed worsening: |new - baseline| <= abs + rel * |baseline| (in the worse direction).
    public struct Tolerance: Equatable, Sendable {
        public var abs: Double
        public var rel: Double
        public init(abs: Double, rel: Double = 0) { self.abs = abs; self.rel = rel }
        func allows(_ delta: Double, baseline: Double) -> Bool { Swift.abs(delta) <= abs + rel * Swift.abs(baseline) }
    }

    public enum Direction: Sendable { case higherIsBetter, lowerIsBetter, either }

    public struct Options: Sendable {
        public var tolerances: [String: Tolerance] = [:]
        /// Metrics not compared: wall-clock timings by default (they vary run to run).
        public var ignored: Set<String> = ResultsEquality.timings
        /// Float32 arithmetic: metrics near 0 (KL, output error of an almost exact policy) move by
        /// rounding alone, e.g. between a debug and a release build, so an absolute floor of 1e-6.
        public var defaultTolerance = Tolerance(abs: 1e-6, rel: 1e-6)
        public init() {}
        func tolerance(_ metric: String) -> Tolerance { tolerances[metric] ?? defaultTolerance }
    }

    /// Which way is better, for the metrics KVLab writes; anything else must not move at all.
    public static func direction(_ metric: String) -> Direction {
        let higher = ["score", "top1_agreement", "attention_recall", "rouge1_f"]
        let lower = ["kl_mean", "kl_max", "kl_p95", "attn_output_rel_error", "compression", "kv_bytes_stored",
                     "kv_bytes_stored_peak", "kv_bytes_read_per_step", "kv_bytes_read_prefill", "read_fraction", "metadata_bytes", "ppl",
                     "memory_fraction", "kv_bytes_total"]
        if higher.contains(metric) { return .higherIsBetter }
        if lower.contains(metric) { return .lowerIsBetter }
        return .either
    }

    public struct Finding: Equatable, Sendable {
        public var index: Int
        public var policy: String
        public var task: String
        public var metric: String
        public var baseline: Double
        public var new: Double
        public var delta: Double { new - baseline }
    }

    public struct Report: Sendable {
        public var regressions: [Finding] = []
        public var improvements: [Finding] = []
        /// Baseline runs with no match in the new file (by key).
        public var missing: [String] = []
        /// Runs that failed in the new file but not in the baseline.
        public var failed: [String] = []
        public var schemaMismatch: String?
        /// Anything else that fails the comparison: an empty file, a non-finite baseline value.
        public var problems: [String] = []
        public var compared = 0
        public var passed: Bool {
            regressions.isEmpty && missing.isEmpty && failed.isEmpty && schemaMismatch == nil && problems.isEmpty
        }

        /// A readable account: what regressed and by how much.
        public func text() -> String {
            var out: [String] = []
            if let s = schemaMismatch { out.append("schema mismatch: \(s)") }
            for p in problems { out.append(p) }
            for m in missing { out.append("missing run: \(m)") }
            for f in failed { out.append("failed run: \(f)") }
            if !regressions.isEmpty {
                out.append("REGRESSIONS (\(regressions.count)):")
                out.append(table(regressions))
            }
            if !improvements.isEmpty {
                out.append("improvements (\(improvements.count), not failures):")
                out.append(table(improvements))
            }
            out.append(passed ? "ok: \(compared) runs match the baseline"
                : "FAILED: \(regressions.count) regressions, \(missing.count) missing, \(failed.count) failed runs" +
                  (problems.isEmpty ? "" : ", \(problems.count) other problems"))
            return out.joined(separator: "\n")
        }

        func table(_ fs: [Finding]) -> String {
            let rows = fs.map { f -> [String] in
                let rel = f.baseline != 0 ? String(format: "%+.2f%%", f.delta / Swift.abs(f.baseline) * 100) : "-"
                return ["\(f.index)", f.task, f.policy, f.metric, fmt(f.baseline), fmt(f.new), fmt(f.delta), rel]
            }
            let head = ["run", "task", "policy", "metric", "baseline", "new", "delta", "relative"]
            let widths = head.indices.map { i in max(head[i].count, rows.map { $0[i].count }.max() ?? 0) }
            func line(_ r: [String]) -> String { zip(r, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ") }
            return ([line(head)] + rows.map(line)).joined(separator: "\n")
        }
        func fmt(_ x: Double) -> String { String(format: "%.6g", x) }
    }

    public static func compare(new: ResultsFile, baseline: ResultsFile, options: Options = Options()) -> Report {
        var report = Report()
        if new.provenance.schemaVersion != baseline.provenance.schemaVersion {
            report.schemaMismatch = "new file has schema \(new.provenance.schemaVersion), baseline \(baseline.provenance.schemaVersion)"
            return report
        }
        // Nothing compared is not a pass.
        if baseline.runs.isEmpty { report.problems.append("baseline '\(baseline.path)' has no runs: nothing to compare against") }
        if new.runs.isEmpty { report.problems.append("'\(new.path)' has no runs") }
        let byKey = Dictionary(new.runs.map { ($0.key, $0) }, uniquingKeysWith: { a, _ in a })
        for b in baseline.runs {
            guard let n = byKey[b.key] else { report.missing.append("\(b.index) \(b.taskKind) \(b.policyLabel)"); continue }
            if b.status == "ok" && n.status != "ok" { report.failed.append("\(n.index) \(n.policyLabel): \(n.status)"); continue }
            report.compared += 1
            for m in b.scalars where !options.ignored.contains(m.name) {
                guard let v = n.scalar(m.name) else {
                    report.regressions.append(Finding(index: n.index, policy: n.policyLabel, task: n.taskKind,
                                                      metric: m.name + " (absent)", baseline: m.value, new: .nan))
                    continue
                }
                let f = Finding(index: n.index, policy: n.policyLabel, task: n.taskKind, metric: m.name, baseline: m.value, new: v)
                // NaN and ±inf are never better or within tolerance. A metric that may be NaN by
                // definition (no decode steps: read_fraction) matches only the same non-finite value.
                if !v.isFinite || !m.value.isFinite {
                    let sameKind = (v.isNaN && m.value.isNaN) || v == m.value
                    if sameKind && !FiniteMetrics.required.contains(m.name) { continue }
                    if !m.value.isFinite {
                        report.problems.append("baseline run \(b.index) \(b.policyLabel): \(m.name) is \(m.value); a baseline must hold finite values (regenerate it)")
                    }
                    if !v.isFinite { report.regressions.append(f) }
                    continue
                }
                if v == m.value { continue }
                let worse: Bool
                switch direction(m.name) {
                case .higherIsBetter: worse = v < m.value
                case .lowerIsBetter: worse = v > m.value
                case .either: worse = true
                }
                if !worse { report.improvements.append(f) }
                else if !options.tolerance(m.name).allows(v - m.value, baseline: m.value) || v.isNaN != m.value.isNaN {
                    report.regressions.append(f)
                }
            }
        }
        return report
    }
}
