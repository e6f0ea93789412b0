// DuoAttention-style per-head budgets: retrieval heads keep the full cache, streaming heads keep attention sinks + a recent window.
// Paper: Xiao et al., "DuoAttention: Efficient Long-Context LLM Inference with Retrieval and Streaming Heads", arXiv 2410.10819.
// Reference: github.com/mit-han-lab/duo-attention (duo_attn/utils.py sparsify_attention_heads: a pattern per layer and KV
// head, the `sparsity` share of lowest-scoring heads become streaming heads; streaming heads keep sink_size + recent_size tokens).
import Foundation
import KVCacheCore

/// Per (layer, KV head): a retrieval head keeps every token; a streaming head keeps the first
/// `sinks` positions and the `recent` newest tokens, evicting the rest at every step end (prefill
/// and decode), so its store really holds sinks + recent rows and the bytes the cache reports are
/// what the stores hold. The reference learns its head pattern (gates optimised on passkey data);
/// here the pattern comes from a `kvlab calibrate heads` score file: a KV head's score is the
/// highest of its query heads' (a KV head serving a retrieval head must keep its tokens for the
/// whole group), and the `sparsity` share of KV heads with the lowest scores, over all layers
/// (the reference's quantile), become streaming heads: round(sparsity x L x Hkv) of them.
public final class DuoAttention: CachePolicy, ConfiguredPolicy, ModelShapeChecked {
    public struct Config: PolicyConfig {
        /// A `kvlab calibrate heads` file, relative to the current directory like model paths.
        public var scores: String
        public var score: String
        public var sparsity: Double
        public var sinks: Int
        public var recent: Int
        public init(scores: String, score: String = "retrieval_score", sparsity: Double = 0.5, sinks: Int = 4, recent: Int = 256) {
            self.scores = scores; self.score = score; self.sparsity = sparsity; self.sinks = sinks; self.recent = recent
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "duo_attention", family: .eviction,
            summary: "per-head budgets: retrieval heads (from a head-score file) keep every token, the others sinks + a recent window ([heads.md](heads.md#duo))",
            defaults: Config(scores: ""),
            parameters: [
                .string("scores", \.scores, required: true, help: "written by `kvlab calibrate heads`"),
                .string("score", \.score, help: "the [layer, head] map that ranks heads"),
                .double("sparsity", \.sparsity, .unit("a share of KV heads in [0, 1]"), help: "share of KV heads (lowest scores) that become streaming heads"),
                .int("sinks", \.sinks, .atLeast(0), help: "first tokens a streaming head keeps"),
                .int("recent", \.recent, .atLeast(1), help: "newest tokens a streaming head keeps"),
            ],
            sample: "scores: results/real/heads_smollm2.h5, sparsity: 0.9, sinks: 4, recent: 64",
            // The contract harness writes a score file next to its Loki file (`exampleFile`). Sparsity 0:
            // every head keeps everything (the full cache); 1: every head streams within the budget.
            examples: { n, cal in
                n == nil ? [Config(scores: exampleFile(cal), sparsity: 0)]
                         : [Config(scores: exampleFile(cal), sparsity: 1, sinks: 4, recent: n! - 4)]
            })
        /// Where the contract tests' head-score file lies, next to their Loki calibration (PolicyHarness writes both).
        public static func exampleFile(_ calibration: String) -> String { calibration + ".head-scores.h5" }
        public func make() throws -> CachePolicy { try DuoAttention(self) }
        public var forcedTokens: [ForcedTokens] { [ForcedTokens("sinks", count: sinks, budget: .tokens(sinks + recent))] }
        /// Streaming heads evict at a layer's step end, after it attended, so prefill attention stays dense.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public let file: HeadScoreFile
    /// [layer][kvHead] true = retrieval (full) head; set by `bind`.
    public private(set) var full: [[Bool]] = []

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        file = try Self.files.load(config.scores, policy: Config.descriptor.name, field: "scores", read: HeadScoreFile.load)
        _ = try file.ranked(by: config.score)   // the map exists
    }

    static let files = PolicyFileCache<HeadScoreFile>()

    /// The score file must be the model's: the same layers and query heads.
    public func check(model shape: CacheShape) throws {
        guard file.layers == shape.layers, file.queryHeads == shape.queryHeads else {
            throw PolicyError.invalidParameter(policy: Config.descriptor.name, field: "scores",
                message: "\(file.path): scores for \(file.layers) layers x \(file.queryHeads) query heads; the model has \(shape.layers) x \(shape.queryHeads)")
        }
    }

    /// Which KV heads of a model of `shape` keep everything: the top (1 - sparsity) share by score.
    public static func pattern(_ file: HeadScoreFile, score: String, sparsity: Double, shape: CacheShape) -> [[Bool]] {
        let m = file.maps[score] ?? [], g = shape.groupSize, hkv = shape.kvHeads, n = shape.layers * hkv
        func kvScore(_ i: Int) -> Float {   // the highest of the group's query heads (NaN lowest)
            let l = i / hkv, h = i % hkv
            return (0..<g).map { m[l * shape.queryHeads + h * g + $0] }.map { $0.isNaN ? -.infinity : $0 }.max()!
        }
        let streaming = Int((sparsity * Double(n)).rounded())
        let order = (0..<n).sorted { kvScore($0) != kvScore($1) ? kvScore($0) > kvScore($1) : $0 < $1 }
        var full = Array(repeating: Array(repeating: false, count: hkv), count: shape.layers)
        for i in order.prefix(n - streaming) { full[i / hkv][i % hkv] = true }
        return full
    }

    public func bind(shape: CacheShape) {
        precondition(file.layers == shape.layers && file.queryHeads == shape.queryHeads,
                     "\(name): the score file does not fit the model (PolicySpec.make(model:) reports it)")
        full = Self.pattern(file, score: config.score, sparsity: config.sparsity, shape: shape)
    }

    /// Streaming heads: sinks (positions < sinks) and the newest `recent` by position (decode-time
    /// evictions reuse slots, so recency is read from positions, not indices).
    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        let st = step.stores[head], keep = config.sinks + config.recent
        guard !full[step.layer][head], st.count > keep else { return nil }
        let scores = (0..<st.count).map { j -> Float in
            let p = st.position(j)
            return p < config.sinks ? .infinity : Float(p)
        }
        return StreamingLLM.topIndices(scores, keep: keep)
    }
}

/// A policy that reads a file made for one model checks, when built for a model, that it fits
/// (`PolicySpec.make(model:)`), so that a mismatch is an error naming the file, not a crash.
public protocol ModelShapeChecked {
    func check(model shape: CacheShape) throws
}
