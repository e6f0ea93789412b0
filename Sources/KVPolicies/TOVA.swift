// TOVA: Token Omission Via Attention.
// Paper: Oren et al., "Transformers are Multi-State RNNs", arXiv 2401.06104.
// Reference: github.com/schwartz-lab-NLP/TOVA (tova_cache.py); kvpress TOVAPress.
import KVCacheCore

/// Scores tokens by the newest query's attention, averaged over *all* query heads of the layer,
/// and keeps the same top tokens for every head; the newest token is always kept (kvpress pads
/// it with max + 1). At prefill the newest query is the prompt's last token; during decoding it
/// is the generated token (probabilities observed from the attention kernel). No forced sinks.
public final class TOVA: ScoredEviction, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var schedule: EvictionSchedule
        public init(budget: Budget, schedule: EvictionSchedule = .always) { self.budget = budget; self.schedule = schedule }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "tova", family: .eviction, summary: "the newest query's attention averaged over all heads; the same tokens for every head",
            defaults: Config(budget: .tokens(1)),
            parameters: [.budget(\.budget), .schedule(\.schedule)],
            sample: "keep: 0.125",
            examples: { n, _ in [Config(budget: .tokens(n ?? 1 << 20))] })
        public func make() throws -> CachePolicy { try TOVA(self) }
        /// Shares the whole dense prefill: evicts at step ends, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var budget: Budget { config.budget }
    public var schedule: EvictionSchedule { config.schedule }
    /// Per layer, during decoding: the newest query's mean probability per original position [positions
    /// seen]. By position, not store index: under a stack with a per-head eviction (H2O...) the heads
    /// of a layer may hold different tokens.
    private var layerScores: [[Float]] = []
    private var prefillMemo: (layer: Int, seen: Int, scores: [Float])?

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(budget: Budget, schedule: EvictionSchedule = Config.descriptor.defaults.schedule) throws {
        try self.init(Config(budget: budget, schedule: schedule))
    }


    public func bind(shape: CacheShape) {
        layerScores = Array(repeating: [], count: shape.layers)
    }

    public func reset() { prefillMemo = nil; layerScores = layerScores.map { _ in [] } }

    public func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {
        let l = step.layer, st = step.stores[head], g = step.shape.groupSize, scale = 1 / Float(step.shape.queryHeads)
        if head == 0 { layerScores[l] = Array(repeating: 0, count: max(step.tokensSeen, (step.positions.max() ?? -1) + 1)) }
        layerScores[l].withUnsafeMutableBufferPointer { t in
            for m in 0..<g {
                let row = probs + m * n
                for j in 0..<n { t[st.position(indices.map { Int($0[j]) } ?? j)] += row[j] * scale }
            }
        }
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        var s: [Float]
        if step.phase == .decode {
            let t = layerScores[step.layer], st = step.stores[head]
            s = (0..<st.count).map { t[st.position($0)] }
        } else if let m = prefillMemo, m.layer == step.layer, m.seen == step.tokensSeen {
            s = m.scores
        } else {
            s = prefillScores(step)
            prefillMemo = (step.layer, step.tokensSeen, s)
        }
        s[s.count - 1] = (s.max() ?? 0) + 1   // the newest token always stays
        return s
    }

    /// The last prompt token's attention over every stored token, averaged over all query heads
    /// (at the end of a prefill every head of the layer holds the same tokens).
    private func prefillScores(_ step: LayerStep) -> [Float] {
        let d = step.shape.headDim, hq = step.shape.queryHeads, g = step.shape.groupSize
        let n = step.stores[0].count
        var mean = [Float](repeating: 0, count: n), p = [Float](repeating: 0, count: n)
        let last = step.queries + (step.rows - 1) * hq * d
        p.withUnsafeMutableBufferPointer { pb in
            for qh in 0..<hq {
                Attention.probabilities(q: last + qh * d, store: step.stores[qh / g], visible: n, scale: step.scale, into: pb.baseAddress!)
                for j in 0..<n { mean[j] += pb[j] / Float(hq) }
            }
        }
        return mean
    }
}
