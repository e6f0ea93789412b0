// PyramidKV: SnapKV scoring with per-layer budgets shrinking linearly from the bottom layer to the top.
// Paper: Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling", arXiv 2406.02069.
// Reference: github.com/Zefan-Cai/KVCache-Factory, pyramidkv/pyramidkv_utils.py, PyramidKVCluster.update_kv
// (the default, `variant: authors`); NVIDIA/kvpress presses/pyramidkv_press.py, get_layer_budget (`variant: kvpress`).
import KVCacheCore

/// SnapKV's scores (observation window, pooling, GQA mean), kept per layer with a pyramid of budgets.
/// C is the budget's capacity for the prompt (tokens, or int(T keep) for a fraction), w the window.
///
/// - `authors` (default; KVCache-Factory `update_kv` lines 360-375): B = C - w prefix tokens on
///   average; min = B // beta, max = 2B - min, clamped to T - w (then min = 2B - max); layer l keeps
///   the top max - l ((max - min) // (L - 1)) prefix tokens **plus the window** (integer arithmetic
///   as the reference). Uniform B + w = C when T < 2B; no compression when T < C. A token budget
///   must exceed the window (the reference asserts C - w > 0); a fraction that resolves to C <= w
///   keeps C tokens, as SnapKV (documented in docs/kvpress-semantics.md).
/// - `kvpress`: kvpress's formula: C' = w + T (1 - r) for a ratio (C for a token budget), min =
///   (C' - w) / beta, max = 2(C' - w) - min clamped to T - w, layer l keeps round(max - l (max - min)
///   / (L - 1)) tokens, window included; uniform round(T (1 - r)) (or the token budget) unless
///   T >= max >= min >= w — so at small budgets it is SnapKV.
public final class PyramidKV: SnapKV {
    public enum Variant: String, Sendable, CaseIterable { case authors, kvpress }
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var window: Int
        public var kernel: Int
        public var pooling: Pooling
        public var beta: Double
        public var variant: Variant
        public init(budget: Budget, window: Int = 64, kernel: Int = 5, pooling: Pooling = .avg, beta: Double = 20,
                    variant: Variant = .authors) {
            self.budget = budget; self.window = window; self.kernel = kernel; self.pooling = pooling
            self.beta = beta; self.variant = variant
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "pyramidkv", family: .eviction, summary: "SnapKV's scores with per-layer budgets shrinking from the bottom layer to the top ([kvpress-semantics.md](kvpress-semantics.md#7-pyramidkv-the-authors-schedule-default-and-kvpresss-variant-kvpress))",
            defaults: Config(budget: .tokens(1)),
            parameters: SnapKV.Config.sharedParameters(\.budget, \.window, \.kernel, \.pooling) + [
                .double("beta", \.beta, Bound(">= 1") { $0 >= 1 }, help: "the pyramid's steepness: the top layer keeps budget / beta"),
                .choice("variant", \.variant, help: "authors: KVCache-Factory's schedule, the window on top of each layer's budget; kvpress: uniform below beta x window tokens"),
            ],
            sample: "keep: 0.25, window: 16",
            check: { c in
                try SnapKV.Config.checkWindow("pyramidkv", budget: c.budget, window: c.window)
                if c.variant == .authors, case .tokens(let n) = c.budget, n <= c.window {
                    throw PolicyError.invalidParameter(policy: "pyramidkv", field: "window",
                        message: "expected a window below the budget (\(n)): the reference keeps budget - window prefix tokens per layer on average, got \(c.window)")
                }
            },
            examples: { n, _ in
                let b = Budget.tokens(n ?? 1 << 20), w = min(8, (n ?? 9) - 1)
                return [Config(budget: b, window: w), Config(budget: b, window: w, variant: .kvpress)]
            })
        public func make() throws -> CachePolicy { try PyramidKV(self) }
        /// Shares the whole dense prefill: evicts at the prefill's step end, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
        public var forcedTokens: [ForcedTokens] { [ForcedTokens("window", count: window, budget: budget)] }
        public var cost: PolicyCost { .window }
    }

    public let config: Config
    public var beta: Double { config.beta }
    public var variant: Variant { config.variant }
    private var layers = 1

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        try super.init(SnapKV.Config(budget: config.budget, window: config.window, kernel: config.kernel, pooling: config.pooling))
    }

    public convenience init(budget: Budget, window: Int = Config.descriptor.defaults.window, kernel: Int = Config.descriptor.defaults.kernel,
                            pooling: Pooling = Config.descriptor.defaults.pooling, beta: Double = Config.descriptor.defaults.beta,
                            variant: Variant = Config.descriptor.defaults.variant) throws {
        try self.init(Config(budget: budget, window: window, kernel: kernel, pooling: pooling, beta: beta, variant: variant))
    }

    public override var name: String { config.label() }
    public override func bind(shape: CacheShape) { layers = shape.layers }

    /// Tokens layer `layer` keeps out of a prompt of `q` tokens (window included).
    public override func capacity(layer: Int, length q: Int) -> Int {
        switch variant {
        case .authors: return authorsCapacity(layer: layer, length: q)
        case .kvpress: return kvpressCapacity(layer: layer, length: q)
        }
    }

    func authorsCapacity(layer: Int, length q: Int) -> Int {
        let c = budget.capacity(for: q), w = window, b = c - w
        guard b > 0 else { return c }                 // a fraction at or below the window (the reference asserts)
        if q < c { return q }                         // l. 373: no compression
        if q < 2 * b { return c }                     // l. 375: uniform B + w
        var minNum = Int((Double(b) / beta).rounded(.down)), maxNum = 2 * b - minNum
        if maxNum >= q - w { maxNum = q - w; minNum = 2 * b - maxNum }
        let steps = layers > 1 ? (maxNum - minNum) / (layers - 1) : 0   // both >= 0 here: floor division
        return maxNum - layer * steps + w
    }

    func kvpressCapacity(layer: Int, length q: Int) -> Int {
        let w = Double(window), T = Double(q)
        let maxCapacity: Double
        switch budget {
        case .ratio(let r): maxCapacity = w + T * (1 - r)
        case .keep(let v): maxCapacity = w + T * (1 - (1 - v))   // as compression_ratio 1 - v
        case .tokens(let n): maxCapacity = Double(n)
        }
        var minNum = (maxCapacity - w) / beta
        var maxNum = (maxCapacity - w) * 2 - minNum
        if maxNum >= T - w {
            maxNum = T - w
            minNum = (maxCapacity - w) * 2 - maxNum
        }
        guard T >= maxNum, maxNum >= minNum, minNum >= w else {
            switch budget {
            case .ratio(let r): return max(1, Int((T * (1 - r)).rounded(.toNearestOrEven)))
            case .keep(let v): return max(1, Int((T * (1 - (1 - v))).rounded(.toNearestOrEven)))
            case .tokens(let n): return n
            }
        }
        let steps = layers > 1 ? (maxNum - minNum) / Double(layers - 1) : 0
        return Int((maxNum - Double(layer) * steps).rounded(.toNearestOrEven))
    }
}

extension PolicySpec {
    /// PyramidKV's spec (`PolicySpec(PyramidKV.Config(...))`), for existing callers.
    public static func pyramidKV(budget: Budget, window: Int, kernel: Int, pooling: SnapKV.Pooling, beta: Double,
                                 variant: PyramidKV.Variant = .authors) -> PolicySpec {
        PolicySpec(PyramidKV.Config(budget: budget, window: window, kernel: kernel, pooling: pooling, beta: beta, variant: variant))
    }
}
