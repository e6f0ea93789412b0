import Foundation

/// Comparisons of a policy's outcome with the full-cache reference on the same sample.
enum Metrics {
    /// log-softmax of a logits row.
    static func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max() ?? 0)
        let lse = m + log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        return x.map { Double($0) - lse }
    }

    /// KL(full || policy) of the next-token distributions.
    static func kl(full: [Float], policy: [Float]) -> Double {
        let lp = logSoftmax(full), lq = logSoftmax(policy)
        var s = 0.0
        for i in lp.indices { s += exp(lp[i]) * (lp[i] - lq[i]) }
        return max(s, 0)
    }

    static func argmax(_ x: [Float]) -> Int { x.indices.max { x[$0] < x[$1] || (x[$0] == x[$1] && $0 > $1) } ?? 0 }

    /// Negative log-likelihood of `token` under a logits row.
    static func nll(_ row: [Float], _ token: Int) -> Double { -logSoftmax(row)[token] }

    static func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return .nan }
        let s = xs.sorted()
        let r = p * Double(s.count - 1)
        let lo = Int(r.rounded(.down)), hi = Int(r.rounded(.up))
        return s[lo] + (s[hi] - s[lo]) * (r - Double(lo))
    }

    static func mean(_ xs: [Double]) -> Double { xs.isEmpty ? .nan : xs.reduce(0, +) / Double(xs.count) }

    /// Attention recall per (layer, query head), averaged over decode steps: the share of the full
    /// cache's attention probability that falls on the positions the policy attended.
    static func attentionRecall(reference: RecordingProbe, policy: RecordingProbe, layers: Int, heads: Int, group: Int) -> [Float] {
        var grid = [Float](repeating: 0, count: layers * heads)
        let steps = min(reference.probabilities.count, policy.attended.count)
        guard steps > 0 else { return grid.map { _ in .nan } }
        for s in 0..<steps { for l in 0..<layers { for h in 0..<heads {
            let p = reference.probabilities[s][l][h]
            var mass: Float = 0
            for pos in policy.attended[s][l][h / group] where Int(pos) < p.count { mass += p[Int(pos)] }
            grid[l * heads + h] += mass / Float(steps)
        } } }
        return grid
    }

    /// Relative L2 error of each (layer, head) slice of the attention output, averaged over steps.
    static func outputError(reference: RecordingProbe, policy: RecordingProbe, layers: Int, heads: Int, headDim d: Int) -> [Float] {
        var grid = [Float](repeating: 0, count: layers * heads)
        let steps = min(reference.outputs.count, policy.outputs.count)
        guard steps > 0 else { return grid.map { _ in .nan } }
        for s in 0..<steps { for l in 0..<layers {
            let a = reference.outputs[s][l], b = policy.outputs[s][l]
            guard a.count == heads * d, b.count == a.count else { continue }
            for h in 0..<heads {
                var num: Float = 0, den: Float = 0
                for i in (h * d)..<((h + 1) * d) { num += (a[i] - b[i]) * (a[i] - b[i]); den += a[i] * a[i] }
                grid[l * heads + h] += (den > 0 ? (num / den).squareRoot() : 0) / Float(steps)
            }
        } }
        return grid
    }
}
