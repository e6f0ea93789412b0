import Foundation
import KVCacheCore
import KVHDF5
import KVModel
import KVPolicies

/// One prompt through one policy (or stack), as `kvlab generate --policy` runs it: prefill the
/// prompt into a cache managed by the policy, record what each layer and KV head kept, then
/// decode. Every byte figure is the cache's own (`CacheStats`).
public struct PromptRun {
    public var policy: PolicySpec
    public var promptIds: [Int]
    public var generation: GenerationResult
    /// Kept original positions per layer and stored KV head once the prompt is in (after the
    /// prefill's eviction), sorted: [layers][kv heads][kept].
    public var retained: [[[Int]]]

    public static func run(model: LlamaModel, prompt: [Int], policy: PolicySpec, maxNewTokens: Int,
                           sampling: Sampling = .greedy, stopAt eos: Set<Int> = [],
                           allPromptLogits: Bool = false, vocabulary: TokenVocabulary? = nil) throws -> PromptRun {
        let live = try policy.make(model: model.cacheShape) { vocabulary ?? TokenVocabulary(size: model.config.vocabSize) }
        let cache = model.makeCache(policy: live, initialCapacity: prompt.count + maxNewTokens + 1)
        var retained: [[[Int]]] = []
        let result = model.generate(prompt: prompt, maxNewTokens: maxNewTokens, sampling: sampling, cache: cache,
                                    allPromptLogits: allPromptLogits, stopAt: eos) { retained = SampleEvaluator.snapshot($0) }
        return PromptRun(policy: policy, promptIds: prompt, generation: result, retained: retained)
    }

    /// The retention map in the results-file layout (docs/results-schema.md):
    /// int32 [samples = 1, layers, kv heads, max kept], padded with -1.
    public var retentionMap: (positions: [Int32], shape: [Int]) {
        let heads = retained.first?.count ?? 0
        let maxKept = retained.flatMap { $0.map(\.count) }.max() ?? 0
        var flat: [Int32] = []
        flat.reserveCapacity(retained.count * heads * maxKept)
        for layer in retained { for head in layer {
            flat += head.map(Int32.init) + Array(repeating: -1, count: maxKept - head.count)
        } }
        return (flat, [1, retained.count, heads, maxKept])
    }

    /// Writes the retention map (dataset `retention`, gzip), the prompt and generated ids and the
    /// cache's measured bytes (attributes) to an HDF5 file, atomically.
    public func writeRetention(to path: String, model: String) throws {
        let map = retentionMap
        let s = generation.stats
        try H5File.writeAtomically(to: path) { f in
            let ds = try f.root.write("retention", int32s: map.positions, shape: map.shape, gzip: 4)
            try ds.setAttribute("doc", "kept original token positions per layer and KV head after the prompt, -1 padded: [samples=1, layers, kv_heads, max_kept]")
            try f.root.write("prompt_ids", int64s: promptIds.map(Int64.init), shape: [promptIds.count])
            try f.root.write("generated_ids", int64s: generation.tokens.map(Int64.init), shape: [generation.tokens.count])
            try f.root.setAttribute("model", model)
            try f.root.setAttribute("policy", policy.kind)
            try f.root.setAttribute("label", policy.label)
            try f.root.setAttribute("params", policy.parametersJSON)
            try f.root.setAttribute("kv_bytes_stored", s.bytesStored)
            try f.root.setAttribute("kv_bytes_stored_peak", s.peakBytesStored)
            try f.root.setAttribute("kv_bytes_read_per_step", s.meanDecodeBytesRead)
            try f.root.setAttribute("metadata_bytes", s.metadataBytes)
            try f.root.setAttribute("tokens_seen", s.tokensSeen)
            try f.root.setAttribute("kvlab_version", KVLabInfo.version)
        }
    }
}
