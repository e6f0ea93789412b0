// Estimated cost of grid points, used to balance shards (ShardPlan) and to size a grid before
// submitting it (`kvlab slurm --dry-run`, docs/cluster.md).
import Foundation
import KVModel
import KVPolicies

/// A run's estimated cost in FLOP-equivalents: the model's arithmetic for every token it reads,
/// decode steps weighted as memory bound, scaled by the policy's cost class.
///
///     prefill attention A = 2·L·H·d·p²                  (causal QK and PV over p prompt tokens)
///     sample S = p·2P + A + n·(kappa·2P + 4·L·H·d·(p + n/2))   (weights, attention, n decode steps)
///     run      = samples x (class.run x S + class.attention x A)
///     (S without p·2P for a policy that replays the reference's dense prefill)
///
/// P = parameters per token (decoder matrices and the output head, `ModelConfig`), L layers,
/// H query heads of size d. kappa (`decodeWeight`) is how many prefill tokens' worth of time one
/// decode step costs: prefill runs the weights as matrix-matrix products, a decode step reads
/// them all for one token. How many tokens a task prefills (p) and decodes (n) per sample is known
/// from the config without building samples (`tokens(for:vocabularySize:)`). Checkpoint shapes come
/// from their `config.json`; a shape that cannot be read falls back to 1 FLOP per token and no
/// attention term, so costs stay comparable within that model only. The constants were measured
/// (CPU seconds per run, scripts/cluster/time_runs.py; docs/cluster.md).
public enum CostModel {
    /// Decode step cost in prefill tokens' weight work: 52-56 ms per decode step against 2.9-3.7 ms
    /// per prefill token on SmolLM2-135M's shape (1 thread), i.e. 18-19.
    public static let decodeWeight = 18.0

    /// The figures of a model shape the estimate needs.
    public struct Shape: Equatable, Sendable {
        /// FLOPs per token through the weights (2 x decoder matrices + output head).
        public var weightFLOPs: Double
        /// L x H x d: attention FLOPs per (query, key) pair are 4 x this.
        public var attentionWidth: Double
        public var vocabularySize: Int

        public init(weightFLOPs: Double, attentionWidth: Double, vocabularySize: Int) {
            self.weightFLOPs = weightFLOPs; self.attentionWidth = attentionWidth; self.vocabularySize = vocabularySize
        }

        public init(_ c: ModelConfig) {
            let matrices = Double(c.parameterCount - c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2))
            self.init(weightFLOPs: 2 * (matrices + Double(c.vocabSize * c.hiddenSize)),
                      attentionWidth: Double(c.layers * c.heads * c.headDim), vocabularySize: c.vocabSize)
        }

        /// Unknown shape: one FLOP per token, no attention term.
        public static let unknown = Shape(weightFLOPs: 1, attentionWidth: 0, vocabularySize: 0)

        /// The shape of a config's model entry (reads a checkpoint's config.json or a GGUF header only).
        public static func of(_ entry: ModelEntry) -> Shape {
            switch entry.source {
            case .synthetic(let config, _, _): return Shape(config)
            case .checkpoint(let path):
                let file = URL(fileURLWithPath: path).appendingPathComponent("config.json").path
                return (try? ModelConfig.load(huggingFace: file)).map(Shape.init) ?? .unknown
            case .gguf(let path):
                return (try? GGUFCheckpoint(path: path)).map { Shape($0.config) } ?? .unknown   // header only
            }
        }
    }

    /// A policy's cost class: its run's time relative to the full cache on the same samples
    /// (`run`), plus a multiple of the prefill attention FLOPs (`attention`) for policies that
    /// materialize prefill attention probabilities.
    public struct PolicyClass: Equatable, Sendable {
        public var name: String
        public var run: Double
        public var attention: Double
    }

    /// Classes measured in CPU seconds per run (docs/cluster.md): `full` reuses the reference
    /// outcomes (metrics only); most policies cost what the full cache costs (within 10%);
    /// SnapKV/PyramidKV score an observation window at prefill (1.1-1.3x); H2O's causal scoring
    /// accumulates the whole prefill attention matrix (its extra time is 3-5x the prefill attention
    /// FLOPs). A stack adds its children's extra costs.
    public static func policyClass(_ p: PolicySpec) -> PolicyClass {
        if let children = p.children {
            let classes = children.map(policyClass)
            return PolicyClass(name: "stack", run: 1 + classes.map { max($0.run - 1, 0) }.reduce(0, +),
                               attention: classes.map(\.attention).reduce(0, +))
        }
        let cost = p.config?.cost ?? .light
        switch cost {
        case .reuse: return PolicyClass(name: "reuse", run: 0.05, attention: 0)
        case .window: return PolicyClass(name: "window", run: 1.2, attention: 0)
        case .prefillScores: return PolicyClass(name: cost.rawValue, run: 1, attention: 4)
        case .light: return PolicyClass(name: "light", run: 1, attention: 0)
        }
    }

    /// Tokens a run of `task` prefills and decodes per sample (decode: question tokens fed through
    /// the decode path, teacher-forced positions, and generated tokens at their default maximum).
    public static func tokens(for task: TaskSpec, vocabularySize: Int) -> (prefill: Int, decode: Int) {
        let question = 16        // the question suffix of a text task, about
        func generated(_ maxNew: Int) -> (Int, Int) {
            task.suffixMode == .decode ? (max(task.context - question, 1), question + maxNew) : (task.context, maxNew)
        }
        switch task.kind {
        case .fidelity, .perplexity:
            let e = min(max(task.evalTokens, 1), max(task.context - 1, 1))
            return (max(task.context - e, 1), e)
        case .mqar:
            let half = vocabularySize / 2
            let pairs = vocabularySize > 0 ? max(1, min(task.context / 4, half - 4, vocabularySize - half)) : task.context / 4
            return (2 * pairs, max(task.context - 2 * pairs, 0))
        case .passkey: return generated(10)
        case .needle, .variableTracking: return generated(30)
        case .commonWords: return generated(120)
        case .niahSingle, .niahMultikey, .niahMultivalue, .niahMultiquery: return generated(128)
        }
    }

    /// FLOP-equivalents of one sample through the full cache, its prefill attention part and its
    /// prefill weights part (p x the weights' FLOPs per token).
    public static func sampleCost(_ task: TaskSpec, shape: Shape) -> (total: Double, prefillAttention: Double, prefillWeights: Double) {
        let (p, n) = tokens(for: task, vocabularySize: shape.vocabularySize)
        let attention = 2 * shape.attentionWidth * Double(p) * Double(p)
        let decode = Double(n) * (decodeWeight * shape.weightFLOPs + 4 * shape.attentionWidth * (Double(p) + Double(n) / 2))
        let weights = Double(p) * shape.weightFLOPs
        return (weights + attention + decode, attention, weights)
    }

    /// Estimated FLOP-equivalents of one grid point (its policy's run, without the reference).
    /// A policy that shares the dense prefill (`PolicySpec.sharesDensePrefill`, docs/config.md "How a
    /// sweep runs") does not run the prefill's weights: the reference's recording is replayed into its
    /// cache, which costs the prefill attention again (the cache's own kernels), not the matrices.
    /// Ablated runs and the other policies are charged their whole prefill (conservative for a
    /// decode-only mask, whose runs the sweep does replay).
    public static func cost(_ point: GridPoint, shape: Shape) -> Double {
        let s = sampleCost(point.task, shape: shape)
        // An ablated task runs its full-cache point too (the reference is the intact model).
        let c = point.policy == .full && point.task.ablation != nil ? PolicyClass(name: "light", run: 1, attention: 0) : policyClass(point.policy)
        let replays = point.policy != .full && point.policy.sharesDensePrefill && point.task.ablation == nil
        let run = replays ? s.total - s.prefillWeights : s.total
        return Double(point.task.samples) * (c.run * run + c.attention * s.prefillAttention)
    }

    /// The full-cache reference a shard computes once for each (model, task) it runs.
    public static func referenceCost(_ point: GridPoint, shape: Shape) -> Double {
        Double(point.task.samples) * sampleCost(point.task, shape: shape).total
    }

    /// "12.3 G", "4.56 T": a FLOP-equivalent count for tables.
    public static func format(_ flops: Double) -> String {
        let units = ["", "K", "M", "G", "T", "P", "E"]
        var v = flops, i = 0
        while v >= 1000 && i < units.count - 1 { v /= 1000; i += 1 }
        return String(format: v >= 100 ? "%.0f %@" : v >= 10 ? "%.1f %@" : "%.2f %@", v, units[i])
    }
}
