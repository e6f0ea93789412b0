// Exact equality of two results files' runs (timings aside): a sharded, merged sweep must hold
// the very numbers an unsharded run of the same config produces.
import Foundation

public enum ResultsEquality {
    /// Wall-clock metrics: they differ run to run.
    public static let timings: Set<String> = ["prefill_s_per_token", "prefill_replay_s_per_token", "decode_s_per_token", "run_wall_s"]

    /// Differences between the runs of `a` and `b`, one line each (empty: equal): the same grid
    /// indices with the same keys, and per run the same status, scalars, per-sample series,
    /// per-layer x head grids, retention maps and generated texts, bit for bit (NaN equals NaN), except the metrics,
    /// per-sample series and texts named in `ignoring`. Provenance (times, hosts, merge attributes) is not compared.
    public static func differences(_ a: ResultsFile, _ b: ResultsFile, ignoring: Set<String> = timings) -> [String] {
        var out: [String] = []
        let left = Dictionary(a.runs.map { ($0.index, $0) }, uniquingKeysWith: { x, _ in x })
        let right = Dictionary(b.runs.map { ($0.index, $0) }, uniquingKeysWith: { x, _ in x })
        if a.runs.count != left.count { out.append("'\(a.path)' holds a grid index twice") }
        if b.runs.count != right.count { out.append("'\(b.path)' holds a grid index twice") }
        for i in Set(left.keys).union(right.keys).sorted() {
            guard let x = left[i] else { out.append("#\(i) only in '\(b.path)'"); continue }
            guard let y = right[i] else { out.append("#\(i) only in '\(a.path)'"); continue }
            if x.key != y.key { out.append("#\(i): keys differ: \(x.key) vs \(y.key)"); continue }
            if x.status != y.status { out.append("#\(i) \(x.policyLabel): status '\(x.status)' vs '\(y.status)'") }
            func same(_ u: Double, _ v: Double) -> Bool { u.bitPattern == v.bitPattern || (u.isNaN && v.isNaN) }
            let xs = x.scalars.filter { !ignoring.contains($0.name) }, ys = y.scalars.filter { !ignoring.contains($0.name) }
            if xs.map(\.name) != ys.map(\.name) { out.append("#\(i) \(x.policyLabel): metrics \(xs.map(\.name)) vs \(ys.map(\.name))") }
            for (m, n) in zip(xs, ys) where m.name == n.name && !same(m.value, n.value) {
                out.append("#\(i) \(x.policyLabel): \(m.name) \(m.value) vs \(n.value)")
            }
            let xp = x.perSample.filter { !ignoring.contains($0.name) }, yp = y.perSample.filter { !ignoring.contains($0.name) }
            if xp.count != yp.count || zip(xp, yp).contains(where: { $0.name != $1.name || $0.values.count != $1.values.count
                || zip($0.values, $1.values).contains { !same($0, $1) } }) {
                out.append("#\(i) \(x.policyLabel): per-sample series differ")
            }
            if x.perLayerHead != y.perLayerHead { out.append("#\(i) \(x.policyLabel): per-layer x head grids differ") }
            if x.retention != y.retention { out.append("#\(i) \(x.policyLabel): retention maps differ") }
            if x.texts.filter({ !ignoring.contains($0.name) }) != y.texts.filter({ !ignoring.contains($0.name) }) {
                out.append("#\(i) \(x.policyLabel): generated texts differ")
            }
        }
        return out
    }
}
