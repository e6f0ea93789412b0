import Foundation

/// Quest's premise at page granularity (mit-han-lab/Quest, kernel path: pages of `pageSize`
/// tokens aligned to position 0, the top P-1 complete pages by the bound q+ . M + q- . m plus the
/// last page, P = budget / pageSize): how much of a query's attention the pages Quest picks hold,
/// next to the best P-1 complete pages by true attention mass plus the last page (the page oracle).
/// Token top-k mass >= page-oracle mass >= Quest mass at the same budget; the gaps separate what
/// reading whole pages costs from what the bound's ranking costs (`PremiseProbe`, docs/probes.md).
enum PageMass {
    /// Per complete page of keys [count, d]: [max (d) | min (d)], [count / S, 2d].
    static func bounds(keys: UnsafePointer<Float>, count: Int, d: Int, pageSize S: Int) -> [Float] {
        let pages = count / S
        var out = [Float](repeating: 0, count: pages * 2 * d)
        for p in 0..<pages {
            for i in 0..<d {
                var mx = keys[p * S * d + i], mn = mx
                for t in 1..<S { let v = keys[(p * S + t) * d + i]; mx = max(mx, v); mn = min(mn, v) }
                out[p * 2 * d + i] = mx; out[p * 2 * d + d + i] = mn
            }
        }
        return out
    }

    /// Pages 0..<count ranked by `scores` (descending, ties to the lower page).
    static func ranked(_ scores: [Double]) -> [Int] {
        scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
    }

    /// Quest's ranking of the complete pages before the last visible one, for the summed
    /// [q+ | q-] of a KV group's query rows q [g, d] (Quest's `kv_group` mode).
    static func questRanking(bounds: [Float], queries q: UnsafePointer<Float>, groups g: Int, d: Int, visible: Int, pageSize S: Int) -> [Int] {
        let scored = (visible - 1) / S                      // complete pages before the last one
        var w = [Double](repeating: 0, count: 2 * d)
        for h in 0..<g { for i in 0..<d { let v = Double(q[h * d + i]); if v > 0 { w[i] += v } else { w[d + i] += v } } }
        let scores = (0..<scored).map { p in (0..<(2 * d)).reduce(0.0) { $0 + w[$1] * Double(bounds[p * 2 * d + $1]) } }
        return ranked(scores)
    }

    /// For one query head's probabilities over `visible` keys and each token budget: the mass of
    /// Quest's pages (from `questRanking`) and of the page oracle's. A store of at most P pages is
    /// read whole (mass 1), as Quest does; a budget below one page is not a Quest budget (NaN).
    static func masses(probs: UnsafePointer<Float>, visible: Int, pageSize S: Int, questRanking: [Int],
                       budgets: [Int]) -> (quest: [Double], oracle: [Double]) {
        let pages = (visible + S - 1) / S, last = pages - 1
        var mass = [Double](repeating: 0, count: pages)
        for j in 0..<visible { mass[j / S] += Double(probs[j]) }
        let oracleRanking = ranked(Array(mass[0..<last]))
        var quest: [Double] = [], oracle: [Double] = []
        for b in budgets {
            let P = b / S
            if P == 0 { quest.append(.nan); oracle.append(.nan); continue }
            if pages <= P { quest.append(mass.reduce(0, +)); oracle.append(mass.reduce(0, +)); continue }
            quest.append(mass[last] + questRanking.prefix(P - 1).reduce(0.0) { $0 + mass[$1] })
            oracle.append(mass[last] + oracleRanking.prefix(P - 1).reduce(0.0) { $0 + mass[$1] })
        }
        return (quest, oracle)
    }
}
