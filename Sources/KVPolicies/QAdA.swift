// QAdA: query-adaptive long-context heads; each decode step, a KV head reads the full cache or only its local window.
// Paper: Donhauser et al., "Unveiling Simplicities of Attention: Adaptive Long-Context Head Identification", arXiv 2502.09647.
// Reference: none public; the test is the second-moment (Gaussian) estimate KVLab's `LongContextStats` measures (docs/heads.md).
import Foundation
import KVCacheCore

/// Stores every token (a selection policy: no memory saved). At each decode step, per layer and KV
/// head, the keys split into local (the first `sinks` positions and the last `window` positions,
/// the current token included) and bulk (the rest). For each query head q of the group:
///
///     A_local = sum_{local} exp(s_i),  s_i = q.k_i / sqrt(d)              (exact: local keys are read anyway)
///     A_hat   = |bulk| * exp(q.mu / sqrt(d) + q^T Sigma q / (2 d))        (Gaussian moment-generating function)
///     f_hat   = A_hat / (A_local + A_hat)
///
/// mu [d] and Sigma [d, d] (1/n) are the mean and covariance of the bulk keys, kept per (layer, KV
/// head) by Welford updates as tokens leave the window (O(d^2) per token), never recomputed from the
/// keys while the store only grows. A query head is long-context when f_hat >= `threshold`; the KV
/// head reads its whole store when ANY of its g query heads is (GQA: the group's K/V rows are read
/// once for all g heads, and a long head needs the bulk), otherwise only its local tokens.
/// Threshold 0: every head reads everything (the full cache's output); above 1: local only.
///
/// Bytes read per step are the attention kernel's (local or all K/V rows, in the stores' format)
/// plus the moments as metadata, (d + d^2) floats per KV head and step. Scoring the local keys for
/// A_local is not metered again: a fused kernel scores them once for both the test and attention.
/// Stacked after an eviction (a store that lost tokens), the moments are rebuilt from the bulk the
/// store still holds; under KIVI they are the keys as they were when they left the window.
public final class QAdA: CachePolicy, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var sinks: Int
        public var window: Int
        public var threshold: Double
        public init(sinks: Int = 4, window: Int = 64, threshold: Double = 0.5) {
            self.sinks = sinks; self.window = window; self.threshold = threshold
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "qada", family: .selection,
            summary: "query-adaptive long-context heads: per step and KV head, the full cache or only sinks + a recent window, by a second-moment estimate of the distant keys' attention mass ([heads.md](heads.md#qada))",
            defaults: Config(),
            parameters: [
                .int("sinks", \.sinks, .atLeast(0), help: "first positions every head reads"),
                .int("window", \.window, .atLeast(1), help: "newest positions every head reads (the current token included)"),
                .double("threshold", \.threshold, .atLeast(0), help: "estimated distant attention mass from which a query head reads the full cache (0: always, > 1: never)"),
            ],
            sample: "sinks: 4, window: 64, threshold: 0.5",
            // Threshold 0: every head is long-context (the full cache). The compressing example reads
            // `n` tokens per KV head: threshold 2 makes every head local (on the contract tests'
            // synthetic model every head's estimate is above 0.3, so a mixed threshold would read all;
            // QAdATests checks mixed decisions against an oracle).
            examples: { n, _ in
                guard let n else { return [Config(threshold: 0)] }
                return [Config(sinks: 4, window: max(n - 4, 1), threshold: 2)]
            })
        /// `mirrorsKeys`: the moments are derived from the stored keys (a position shift would re-rotate them).
        public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name, mirrorsKeys: true, selects: true) }
        public func make() throws -> CachePolicy { try QAdA(self) }
        /// Shares the whole dense prefill: selects in decode only.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    /// [layer][kvHead] the bulk moments and decision counts of the store each layer reads.
    private var heads: [[BulkMoments]] = []

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public func bind(shape: CacheShape) {
        heads = (0..<shape.layers).map { _ in (0..<shape.kvHeads).map { _ in BulkMoments(headDim: shape.headDim) } }
    }

    public func reset() { for l in heads { for m in l { m.clear(); m.decisions = 0; m.full = 0 } } }

    /// The moments held: (d + d^2) floats per (layer, KV head), counted as stored metadata.
    public var metadataBytes: Int { heads.reduce(0) { $0 + $1.count } * BulkMoments.floats(heads.first?.first?.headDim ?? 0) * 4 }

    /// Fraction of (decode step, layer, KV head) decisions that read the full store.
    public var fullFraction: Double {
        let (n, f) = heads.joined().reduce((0, 0)) { ($0.0 + $1.decisions, $0.1 + $1.full) }
        return n > 0 ? Double(f) / Double(n) : .nan
    }
    public var runMetrics: [(String, Double)] { [("qada_full_fraction", fullFraction)] }

    /// A store lost or reordered tokens: rebuild the moments of every layer that reads it.
    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        let st = heads[layer][head].store
        for l in heads.indices where l == layer || (st != nil && heads[l][head].store === st) { heads[l][head].dirty = true }
    }

    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        guard step.phase == .decode, let qpos = step.positions.last else { return candidates }
        let st = step.stores[head], m = heads[step.layer][head], d = st.headDim, g = step.shape.groupSize
        let n = qpos + 1, sinks = min(config.sinks, n), boundary = max(n - config.window, sinks)
        m.update(store: st, sinks: sinks, boundary: boundary)
        let local = QAdA.localIndices(st, sinks: sinks, windowStart: boundary, total: n)
        guard m.count > 0, local.count < st.count else { return candidates }   // no bulk: everything is local
        step.meter.metadataBytes += BulkMoments.floats(d) * MemoryLayout<Float>.stride
        let long = (0..<g).contains { h in
            m.bulkFraction(query: step.queries + (head * g + h) * d, scale: Double(step.scale), local: local, store: st) >= config.threshold
        }
        m.decisions += 1
        if long { m.full += 1; return candidates }
        guard let candidates else { return local }
        let keep = Set(local)
        let narrowed = candidates.filter { keep.contains($0) }
        return narrowed.isEmpty ? candidates : narrowed
    }

    /// Store indices (increasing) of the tokens at positions < sinks or >= windowStart.
    static func localIndices(_ st: HeadStore, sinks: Int, windowStart: Int, total n: Int) -> [Int32] {
        if st.isOrdered && st.count == n && (n == 0 || st.position(n - 1) == n - 1) {   // index i holds position i
            return (0..<sinks).map(Int32.init) + (windowStart..<n).map(Int32.init)
        }
        return (0..<st.count).filter { let p = st.position($0); return p < sinks || p >= windowStart }.map(Int32.init)
    }

    /// For tests and tools: the bulk count, mean [d] and covariance [d, d] (1/n) held for (layer, KV head).
    /// Rebuilt first when the store lost tokens since the last step.
    public func moments(layer: Int, head: Int) -> (count: Int, mean: [Float], covariance: [Float]) {
        let m = heads[layer][head], d = m.headDim
        if m.dirty, let st = m.store { let b = m.folded; m.update(store: st, sinks: min(config.sinks, b), boundary: b) }
        let n = Float(max(m.count, 1))
        return (m.count, Array(UnsafeBufferPointer(start: m.mean, count: d)),
                Array(UnsafeBufferPointer(start: m.m2, count: d * d)).map { $0 / n })
    }

    /// For tests and tools: decisions made and how many read the full store, for (layer, KV head).
    public func decisions(layer: Int, head: Int) -> (made: Int, full: Int) { (heads[layer][head].decisions, heads[layer][head].full) }
}

/// Running moments of the bulk keys of one store: Welford's mean [d] and sum of centered outer
/// products M2 [d, d] (covariance = M2 / count), over the tokens at positions [sinks, folded).
final class BulkMoments {
    let headDim: Int
    let mean: UnsafeMutablePointer<Float>      // [d]
    let m2: UnsafeMutablePointer<Float>        // [d, d]
    private let key: UnsafeMutablePointer<Float>, delta: UnsafeMutablePointer<Float>   // [d] scratch
    var count = 0
    /// Positions [sinks, folded) of the store are in the moments.
    var folded = 0
    weak var store: HeadStore?
    var dirty = false
    var decisions = 0, full = 0

    static func floats(_ d: Int) -> Int { d + d * d }

    init(headDim d: Int) {
        headDim = d
        mean = .allocate(capacity: d); m2 = .allocate(capacity: d * d)
        key = .allocate(capacity: d); delta = .allocate(capacity: d)
        clear()
    }
    deinit { mean.deallocate(); m2.deallocate(); key.deallocate(); delta.deallocate() }

    func clear() {
        mean.update(repeating: 0, count: headDim); m2.update(repeating: 0, count: headDim * headDim)
        count = 0; folded = 0; dirty = false
    }

    /// Folds in the store's tokens at positions [max(folded, sinks), boundary); from scratch when the
    /// store is another one or lost tokens since.
    func update(store st: HeadStore, sinks: Int, boundary: Int) {
        if store !== st || dirty { clear(); store = st }
        let lo = max(folded, sinks)
        guard boundary > lo else { return }
        if st.isOrdered && st.count > boundary - 1 && st.position(boundary - 1) == boundary - 1 && st.position(lo) == lo {
            for i in lo..<boundary { add(st, i) }                // index i holds position i
        } else {
            for i in 0..<st.count { let p = st.position(i); if p >= lo && p < boundary { add(st, i) } }
        }
        folded = boundary
    }

    private func add(_ st: HeadStore, _ i: Int) {
        let d = headDim
        st.key(i, into: key)
        count += 1
        let inv = 1 / Float(count)
        for j in 0..<d { delta[j] = key[j] - mean[j]; mean[j] += delta[j] * inv }
        for a in 0..<d {                                           // M2 += (x - mean_old)(x - mean_new)^T
            let da = delta[a], row = m2 + a * d
            for b in 0..<d { row[b] += da * (key[b] - mean[b]) }
        }
    }

    /// f_hat of query q [d] against the store's `local` tokens and these bulk moments.
    func bulkFraction(query q: UnsafePointer<Float>, scale: Double, local: [Int32], store st: HeadStore) -> Double {
        let d = headDim
        var s = [Double](repeating: 0, count: local.count)
        for (r, i) in local.enumerated() {
            st.key(Int(i), into: key)
            var acc = 0.0
            for j in 0..<d { acc += Double(q[j]) * Double(key[j]) }
            s[r] = acc * scale
        }
        let top = s.max() ?? 0
        let logLocal = top + log(s.reduce(0.0) { $0 + exp($1 - top) })
        var qm = 0.0, qsq = 0.0
        for a in 0..<d {
            qm += Double(q[a]) * Double(mean[a])
            var row = 0.0
            let r = m2 + a * d
            for b in 0..<d { row += Double(r[b]) * Double(q[b]) }
            qsq += Double(q[a]) * row
        }
        let variance = max(qsq / Double(count), 0) * scale * scale
        let logBulk = log(Double(count)) + qm * scale + variance / 2
        return 1 / (1 + exp(logLocal - logBulk))
    }
}
