// SnapKV: an observation window of the prompt's last queries votes for the tokens to keep.
// Paper: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", arXiv 2404.14469.
// Reference: github.com/FasterDecoding/SnapKV; kvpress SnapKVPress (followed here, incl. its GQA mean).
import KVCacheCore

/// Once, at the end of prefill, when the prompt exceeds the capacity: the last `window` prompt
/// queries attend causally over the prompt; each prefix token's score is the mean of its
/// probabilities over the window rows, smoothed by a 1-D pooling (kernel k, stride 1, padding
/// k/2, zero padding counted), averaged over the query heads of the KV group. The top
/// `capacity - window` prefix tokens are kept per KV head, plus the whole window.
/// Decode tokens are appended and never evicted.
public class SnapKV: ScoredEviction {
    public enum Pooling: String, Sendable, CaseIterable { case avg, max }
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var window: Int
        public var kernel: Int
        public var pooling: Pooling
        /// kvpress defaults: window 64, kernel 5, average pooling.
        public init(budget: Budget, window: Int = 64, kernel: Int = 5, pooling: Pooling = .avg) {
            self.budget = budget; self.window = window; self.kernel = kernel; self.pooling = pooling
        }
        /// The parameters SnapKV and PyramidKV share, in this order.
        static func sharedParameters<C>(_ budget: WritableKeyPath<C, Budget>, _ window: WritableKeyPath<C, Int>,
                                  _ kernel: WritableKeyPath<C, Int>, _ pooling: WritableKeyPath<C, Pooling>) -> [PolicyParameter<C>] {
            [.budget(budget),
             .int("window", window, .atLeast(1), help: "observation window: the prompt's last queries, which score the tokens and are always kept"),
             .int("kernel", kernel, Bound("an odd size >= 1") { $0 >= 1 && $0 % 2 == 1 }, help: "1-D pooling of the scores (odd)"),
             .choice("pooling", pooling, help: "pooling of the scores")]
        }
        /// A token budget at least the window (the window is kept whole).
        static func checkWindow(_ policy: String, budget: Budget, window: Int) throws {
            if case .tokens(let n) = budget, window > n {
                throw PolicyError.invalidParameter(policy: policy, field: "window", message: "expected at most the budget (\(n)), got \(window)")
            }
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "snapkv", family: .eviction, summary: "an observation window of the prompt's last queries votes once, at the end of prefill",
            defaults: Config(budget: .tokens(1)),
            parameters: sharedParameters(\.budget, \.window, \.kernel, \.pooling),
            sample: "keep: 0.25, window: 16",
            check: { try checkWindow("snapkv", budget: $0.budget, window: $0.window) },
            examples: { n, _ in
                let b = Budget.tokens(n ?? 1 << 20), w = min(8, n ?? 8)
                return [Config(budget: b, window: w), Config(budget: b, window: w, kernel: 3, pooling: .max)]
            })
        public func make() throws -> CachePolicy { try SnapKV(self) }
        /// Shares the whole dense prefill: evicts at the prefill's step end, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
        public var forcedTokens: [ForcedTokens] { [ForcedTokens("window", count: window, budget: budget)] }
        public var cost: PolicyCost { .window }
    }

    public let snap: Config
    public var budget: Budget { snap.budget }
    public var window: Int { snap.window }
    public var kernel: Int { snap.kernel }
    public var pooling: Pooling { snap.pooling }
    public var schedule: EvictionSchedule { .prefill }
    public var queryWindow: Int { window }

    public init(_ config: Config) throws {
        try config.validate()
        snap = config
    }

    public convenience init(budget: Budget, window: Int = Config.descriptor.defaults.window, kernel: Int = Config.descriptor.defaults.kernel,
                            pooling: Pooling = Config.descriptor.defaults.pooling) throws {
        try self.init(Config(budget: budget, window: window, kernel: kernel, pooling: pooling))
    }

    public func bind(shape: CacheShape) {}
    public func capacity(layer: Int, length: Int) -> Int { budget.capacity(for: length) }

    public var name: String { snap.label() }

    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        // A prompt no longer than the window cannot be scored (kvpress asserts); keep it whole.
        guard step.stores[head].count > window, step.recentCount >= window else { return nil }
        guard let cap = currentCapacity(step), step.stores[head].count > cap else { return nil }
        return Self.topIndices(scores(step, head: head), keep: max(cap, 0))
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        let st = step.stores[head], n = st.count, prefix = n - window
        let d = step.shape.headDim, hq = step.shape.queryHeads, g = step.shape.groupSize
        var total = [Float](repeating: 0, count: prefix)
        var p = [Float](repeating: 0, count: n)
        let rows = step.recentQueries + (step.recentCount - window) * hq * d   // [window, H*d]
        p.withUnsafeMutableBufferPointer { pb in
            for member in 0..<g {
                let qh = head * g + member
                var mean = [Float](repeating: 0, count: prefix)
                for i in 0..<window {
                    Attention.probabilities(q: rows + i * hq * d + qh * d, store: st, visible: prefix + i + 1,
                                            scale: step.scale, into: pb.baseAddress!)
                    for j in 0..<prefix { mean[j] += pb[j] }
                }
                for j in 0..<prefix { mean[j] /= Float(window) }
                let pooled = pool(mean)
                for j in 0..<prefix { total[j] += pooled[j] / Float(g) }
            }
        }
        let top = (total.max() ?? 0) + 1
        return total + Array(repeating: top, count: window)
    }

    /// 1-D pooling, stride 1, padding k/2 (avg counts the zero padding, as torch's avg_pool1d).
    func pool(_ x: [Float]) -> [Float] {
        let half = kernel / 2
        return x.indices.map { i in
            let lo = max(0, i - half), hi = min(x.count - 1, i + half)
            switch pooling {
            case .avg: return x[lo...hi].reduce(0, +) / Float(kernel)
            case .max: return x[lo...hi].max()!
            }
        }
    }
}
