// Per-head measurements during decoding, for retrieval-head detection and long-context scores.
// Papers: Wu et al., "Retrieval Head Mechanistically Explains Long-Context Factuality" (arXiv 2404.15574,
// reference nightdessert/Retrieval_Head); Donhauser et al., "Unveiling Simplicities of Attention:
// Adaptive Long-Context Head Identification" (arXiv 2502.09647, no public code found).
import Foundation
import KVCacheCore

/// A cache policy that keeps everything and only looks (the pattern of `PremiseRecorder`): at each
/// armed decode step it records every query head's top-1 attended position (retrieval scores) and
/// accumulates the long-context statistics of `LongContextStats`.
final class HeadScoreRecorder: CachePolicy {
    let longContext: LongContextStats.Options
    private(set) var shape: CacheShape?
    /// Top-1 original position per [layer][query head] at the last armed step (-1 = none).
    private(set) var top1: [[Int]] = []
    private(set) var stats: LongContextStats?
    /// Record only while armed (the detector arms each generation step).
    var armed = false

    init(longContext: LongContextStats.Options) { self.longContext = longContext }

    var name: String { "head_score_recorder" }

    func bind(shape: CacheShape) {
        guard self.shape != shape else { return }
        self.shape = shape
        top1 = Array(repeating: Array(repeating: -1, count: shape.queryHeads), count: shape.layers)
        stats = LongContextStats(layers: shape.layers, queryHeads: shape.queryHeads, options: longContext)
    }

    /// probs [g, n] over the store's tokens in order (a full cache: index i holds position i).
    func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {
        guard armed, step.phase == .decode, let shape, n > 0 else { return }
        let g = shape.groupSize, d = shape.headDim, store = step.stores[head]
        precondition(indices == nil && store.isOrdered && store.rows is Float32Rows && n == store.count,
                     "head scores are measured on a full Float32 cache")
        for m in 0..<g {
            let qh = head * g + m, row = probs + m * n
            var best = 0
            for i in 1..<n where row[i] > row[best] { best = i }      // first maximum, like a stable top-1
            top1[step.layer][qh] = store.position(best)
            stats?.add(layer: step.layer, head: qh, query: step.queries + qh * d, keys: store.keys, count: n,
                       headDim: d, scale: step.scale, probs: row)
        }
    }

    func resetTop1() {
        for l in top1.indices { for h in top1[l].indices { top1[l][h] = -1 } }
    }
}

/// The long-context statistics of one decode query per head ("Unveiling Simplicities of Attention").
/// The keys of a query at step T split into a local window (the first `sinks` tokens and the last
/// `window` tokens) and the bulk (the rest). With scores s_i = q.k_i / sqrt(d):
/// - oracle: the exact attention mass of the bulk, f = sum_bulk p_i;
/// - QAdA (second-moment approximation): the bulk's sum of exp(s_i) is replaced by its value when the
///   bulk keys are Gaussian with mean mu and covariance Sigma, the Gaussian moment-generating function
///     sum_{i in bulk} exp(s_i) ~ |bulk| * exp(q.mu / sqrt(d) + q^T Sigma q / (2 d)),
///   and f_hat = A_hat / (A_local + A_hat) with A_local = sum_local exp(s_i) exact. mu and Sigma
///   (1/n normalisation) are the moments of the bulk keys ("bulk": our reading of the paper's QAdA,
///   mu_K and Sigma_K of the distant keys, which a cache keeps incrementally in O(d^2) per token, so
///   only the local keys are scored exactly), or, as a variant, of the local window's keys ("local":
///   nothing outside the window is read at all). q.mu/sqrt(d) and q^T Sigma q/d are the mean and
///   variance of the scores over the same keys, which is how they are computed here.
/// A query is long-context for a head when f (or f_hat) >= `threshold`.
public struct LongContextStats {
    public struct Options: Sendable {
        public var sinks = 4, window = 64
        public var threshold = 0.5
        public init(sinks: Int = 4, window: Int = 64, threshold: Double = 0.5) {
            self.sinks = sinks; self.window = window; self.threshold = threshold
        }
    }
    let layers: Int, queryHeads: Int, options: Options
    /// Sums over measured queries, [L * H]: f, f_hat(local), f_hat(bulk); long-context labels;
    /// agreement of each approximation's label with the oracle's.
    var bulkMass: [Double], qadaLocal: [Double], qadaBulk: [Double]
    var longOracle: [Double], longLocal: [Double], longBulk: [Double], agreeLocal: [Double], agreeBulk: [Double]
    var queries: [Int]

    init(layers: Int, queryHeads: Int, options: Options) {
        self.layers = layers; self.queryHeads = queryHeads; self.options = options
        let z = [Double](repeating: 0, count: layers * queryHeads)
        bulkMass = z; qadaLocal = z; qadaBulk = z; longOracle = z; longLocal = z; longBulk = z; agreeLocal = z; agreeBulk = z
        queries = Array(repeating: 0, count: layers * queryHeads)
    }

    /// The three bulk fractions of one query over keys [n, d] (positions 0..<n), probs [n] its
    /// exact attention; nil when the bulk is empty (n <= sinks + window).
    public static func fractions(query q: UnsafePointer<Float>, keys: UnsafePointer<Float>, count n: Int, headDim d: Int,
                          scale: Float, probs: UnsafePointer<Float>, options o: Options) -> (oracle: Double, local: Double, bulk: Double)? {
        let sinks = min(o.sinks, n), localStart = max(n - o.window, sinks)
        let bulkCount = localStart - sinks
        guard bulkCount > 0 else { return nil }
        var s = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var acc: Float = 0
            let k = keys + i * d
            for j in 0..<d { acc += q[j] * k[j] }
            s[i] = Double(acc * scale)
        }
        var oracle = 0.0
        for i in sinks..<localStart { oracle += Double(probs[i]) }
        let local = Array(0..<sinks) + Array(localStart..<n), bulk = Array(sinks..<localStart)
        let m = local.map { s[$0] }.max()!
        let logLocal = m + log(local.reduce(0.0) { $0 + exp(s[$1] - m) })
        func approx(_ set: [Int]) -> Double {
            let mean = set.reduce(0.0) { $0 + s[$1] } / Double(set.count)
            let variance = set.reduce(0.0) { $0 + (s[$1] - mean) * (s[$1] - mean) } / Double(set.count)
            let logBulk = log(Double(bulkCount)) + mean + variance / 2
            return 1 / (1 + exp(logLocal - logBulk))
        }
        return (oracle, approx(local), approx(bulk))
    }

    mutating func add(layer: Int, head: Int, query: UnsafePointer<Float>, keys: UnsafePointer<Float>, count n: Int,
                      headDim: Int, scale: Float, probs: UnsafePointer<Float>) {
        guard let f = Self.fractions(query: query, keys: keys, count: n, headDim: headDim, scale: scale, probs: probs,
                                     options: options) else { return }
        let i = layer * queryHeads + head, t = options.threshold
        let lo = f.oracle >= t, ll = f.local >= t, lb = f.bulk >= t
        bulkMass[i] += f.oracle; qadaLocal[i] += f.local; qadaBulk[i] += f.bulk
        longOracle[i] += lo ? 1 : 0; longLocal[i] += ll ? 1 : 0; longBulk[i] += lb ? 1 : 0
        agreeLocal[i] += ll == lo ? 1 : 0; agreeBulk[i] += lb == lo ? 1 : 0
        queries[i] += 1
    }

    /// Means per head [L * H] (NaN for a head that measured nothing).
    func mean(_ x: [Double]) -> [Float] { zip(x, queries).map { $1 > 0 ? Float($0 / Double($1)) : .nan } }
}
