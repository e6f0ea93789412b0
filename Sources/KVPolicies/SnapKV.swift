// SnapKV: an observation window of the prompt's last queries votes for the tokens to keep.
// Paper: Li et al., "SnapKV: LLM Knows What You are Looking for Before Generation", arXiv 2404.14469.
// Reference: github.com/FasterDecoding/SnapKV; kvpress SnapKVPress (followed here, incl. its GQA mean).
import KVCache

/// Once, at the end of prefill, when the prompt exceeds the capacity: the last `window` prompt
/// queries attend causally over the prompt; each prefix token's score is the mean of its
/// probabilities over the window rows, smoothed by a 1-D pooling (kernel k, stride 1, padding
/// k/2, zero padding counted), averaged over the query heads of the KV group. The top
/// `capacity - window` prefix tokens are kept per KV head, plus the whole window.
/// Decode tokens are appended and never evicted.
public class SnapKV: ScoredEviction {
    public enum Pooling: String, Sendable, CaseIterable { case avg, max }
    public let budget: Budget
    public let window: Int
    public let kernel: Int
    public let pooling: Pooling
    public var schedule: EvictionSchedule { .prefill }
    public var queryWindow: Int { window }
    var policyName: String { "snapkv" }

    /// kvpress defaults: window 64, kernel 5, average pooling.
    public init(budget: Budget, window: Int = 64, kernel: Int = 5, pooling: Pooling = .avg) throws {
        let name = "snapkv"
        try budget.validate(policy: name)
        if window < 1 { throw PolicyError.invalidParameter(policy: name, field: "window", message: "expected >= 1, got \(window)") }
        if kernel < 1 || kernel % 2 == 0 {
            throw PolicyError.invalidParameter(policy: name, field: "kernel", message: "expected an odd size >= 1, got \(kernel)")
        }
        if case .tokens(let n) = budget, window > n {
            throw PolicyError.invalidParameter(policy: name, field: "window", message: "expected at most the budget (\(n)), got \(window)")
        }
        self.budget = budget; self.window = window; self.kernel = kernel; self.pooling = pooling
    }

    public func bind(shape: CacheShape) {}
    public func capacity(layer: Int, length: Int) -> Int { budget.capacity(for: length) }

    public var name: String { "\(policyName)(budget=\(budget),window=\(window),kernel=\(kernel),\(pooling.rawValue))" }

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
