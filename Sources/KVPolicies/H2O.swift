// H2O: Heavy-Hitter Oracle.
// Paper: Zhang et al., "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of LLMs", arXiv 2306.14048.
// Reference: github.com/FMInference/H2O (h2o_hf/utils_real_drop); kvpress ObservedAttentionPress (the `.observed` scoring).
import KVCacheCore

/// Keeps the `recent` newest tokens plus the `capacity - recent` older tokens with the most
/// accumulated attention, per KV head.
///
/// Scoring `.causal` (default, the reference's real-drop cache): each token's score is the sum of
/// the attention probabilities it received from every query row seen so far (prefill rows and
/// decode steps), summed over the query heads of its KV group; evicted tokens' scores are dropped.
/// Only rows that could see a token add to it (no peeking at future rows, unlike the reference's
/// lm-eval path). Scoring `.observed` is kvpress's ObservedAttentionPress: prefill column sums
/// divided by the number of queries that see each key (T - j), averaged over the group, no
/// recent window, prefill only.
public final class H2O: ScoredEviction, ConfiguredPolicy {
    public enum Scoring: String, Sendable, CaseIterable { case causal, observed }
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var recentFraction: Double
        public var scoring: Scoring
        public var schedule: EvictionSchedule
        /// Defaults follow the reference: half of the budget recent, half heavy hitters, enforced as
        /// generation grows; kvpress's observed attention: no recent window, prefill only.
        public init(budget: Budget, recentFraction: Double? = nil, scoring: Scoring = .causal, schedule: EvictionSchedule? = nil) {
            self.budget = budget; self.scoring = scoring
            self.recentFraction = recentFraction ?? (scoring == .observed ? 0 : 0.5)
            self.schedule = schedule ?? (scoring == .observed ? .prefill : .always)
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "h2o", family: .eviction, summary: "heavy hitters by accumulated attention plus a recent window, per KV head",
            defaults: Config(budget: .tokens(1)),
            parameters: [
                .budget(\.budget),
                .double("recent_fraction", \.recentFraction, .unit("a value in [0, 1]"),
                        default: { $0.scoring == .observed ? 0 : 0.5 }, help: "share of the budget kept for the newest tokens (0 with scoring observed)"),
                .choice("scoring", \.scoring, help: "causal: attention received from every query row seen (the reference); observed: kvpress's ObservedAttentionPress"),
                .schedule(\.schedule, default: { $0.scoring == .observed ? .prefill : .always }),
            ],
            sample: "keep: 0.125",
            examples: { n, _ in [Config(budget: .tokens(n ?? 1 << 20)), Config(budget: .tokens(n ?? 1 << 20), scoring: .observed)] })
        public func make() throws -> CachePolicy { try H2O(self) }
        /// Shares the whole dense prefill: scores and evicts at step ends, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
        public var cost: PolicyCost { scoring == .causal ? .prefillScores : .light }
    }

    public let config: Config
    public var budget: Budget { config.budget }
    /// The share of the budget kept for the newest tokens (0 under `.observed`).
    public let recentFraction: Double
    public var scoring: Scoring { config.scoring }
    public var schedule: EvictionSchedule { config.schedule }
    private var acc: [[[Float]]] = []          // [layer][kvHead][stored token] accumulated attention

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        recentFraction = config.scoring == .observed ? 0 : config.recentFraction
    }

    public convenience init(budget: Budget, recentFraction: Double? = nil, scoring: Scoring = Config.descriptor.defaults.scoring,
                            schedule: EvictionSchedule? = nil) throws {
        try self.init(Config(budget: budget, recentFraction: recentFraction, scoring: scoring, schedule: schedule))
    }


    public func bind(shape: CacheShape) {
        acc = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
    }
    public func reset() { acc = acc.map { $0.map { _ in [] } } }

    public var metadataBytes: Int { acc.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count * 4 } } }

    public func didAppend(_ step: LayerStep) {
        let l = step.layer, d = step.shape.headDim, hq = step.shape.queryHeads, g = step.shape.groupSize
        for h in 0..<step.shape.kvHeads {
            let st = step.stores[h]
            acc[l][h] += Array(repeating: 0, count: st.count - acc[l][h].count)
            guard step.phase == .prefill else { continue }     // decode rows arrive through observe
            let visible = Attention.visibleCounts(store: st, positions: step.positions)
            acc[l][h].withUnsafeMutableBufferPointer { a in
                for member in 0..<g {
                    Attention.addColumnSums(q: step.queries + (h * g + member) * d, ldq: hq * d, rows: step.rows,
                                            store: st, visible: visible, scale: step.scale, into: a.baseAddress!)
                }
            }
        }
    }

    /// A layer that reads another layer's store (cross-layer sharing) holds no scores: only the
    /// layer that owns a store scores its tokens (the one whose retention runs).
    public func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {
        guard acc[step.layer][head].count == step.stores[head].count else { return }
        accumulate(probs, rows: step.shape.groupSize, count: n, indices: indices, scale: 1, into: &acc[step.layer][head])
    }

    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        guard let cap = currentCapacity(step), step.stores[head].count > cap else { return nil }
        var s = scores(step, head: head)
        let recent = min(Int(Double(cap) * recentFraction), cap)
        if recent > 0 {
            // The tokens at the `recent` newest positions always stay (slots may be out of order;
            // recent tokens are never evicted, so those positions are all present).
            let st = step.stores[head]
            var newest = 0
            for j in 0..<st.count { newest = max(newest, st.position(j)) }
            for j in 0..<st.count where st.position(j) > newest - recent { s[j] = .infinity }
        }
        return Self.topIndices(s, keep: cap)
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        let a = acc[step.layer][head]
        guard scoring == .observed else { return a }
        let n = a.count, g = Float(step.shape.groupSize)
        return (0..<n).map { j in a[j] / Float(n - j) / g }
    }

    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        // kept[i] = old index of the token now at i (evictions and slot moves alike).
        applyRetention(&acc[layer][head], kept: kept)
    }
}
