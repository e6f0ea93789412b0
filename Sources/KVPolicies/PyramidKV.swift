// PyramidKV: SnapKV scoring with per-layer budgets shrinking linearly from the bottom layer to the top.
// Paper: Cai et al., "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling", arXiv 2406.02069.
// Reference: github.com/Zefan-Cai/KVCache-Factory, pyramidkv/pyramidkv_utils.py, PyramidKVCluster.update_kv
// (the default, `variant: authors`); NVIDIA/kvpress presses/pyramidkv_press.py, get_layer_budget (`variant: kvpress`).
import KVCache

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
    public let beta: Double
    public let variant: Variant
    private var layers = 1

    public init(budget: Budget, window: Int = 64, kernel: Int = 5, pooling: Pooling = .avg, beta: Double = 20,
                variant: Variant = .authors) throws {
        if beta < 1 { throw PolicyError.invalidParameter(policy: "pyramidkv", field: "beta", message: "expected >= 1, got \(beta)") }
        if variant == .authors, case .tokens(let n) = budget, n <= window {
            throw PolicyError.invalidParameter(policy: "pyramidkv", field: "window",
                message: "expected a window below the budget (\(n)): the reference keeps budget - window prefix tokens per layer on average, got \(window)")
        }
        self.beta = beta
        self.variant = variant
        try super.init(budget: budget, window: window, kernel: kernel, pooling: pooling)
    }

    override var policyName: String { "pyramidkv" }
    public override var name: String { super.name.replacingOccurrences(of: ")", with: ",beta=\(beta),\(variant.rawValue))") }
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
