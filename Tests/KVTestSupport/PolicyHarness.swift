import Foundation
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// The contract tests' model, prompt and run loop (kvpress's tests/default_presses.py plays this
/// part there): a small synthetic model, a prompt of 96 tokens, then 8 decode steps, with the
/// stores checked after the prefill and after every decode step.
public enum PolicyHarness {
    public static let model = try! ModelSource.parse("synthetic:tiny,std=0.15,seed=3").load()
    public static let prompt = (0..<96).map { ($0 * 37 + 11) % 256 }
    public static let decodeTokens = [5, 77, 130, 9, 200, 31, 64, 18]
    /// Every token a run feeds.
    public static var context: Int { prompt.count + decodeTokens.count }

    /// A Loki calibration file of `model` (fitted on seeded random tokens), written once per process,
    /// and next to it the SVD KV-head calibrations the svd_heads examples read
    /// (`SVDHeads.Config.exampleFile`: every stored head count that divides the model's).
    public static let calibrationFile: String = {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-harness-\(UUID().uuidString).h5").path
        try! SelectionFixtures.calibration(model).save(to: path)
        let hkv = model.config.kvHeads
        for n in 1...hkv where hkv % n == 0 {
            try! SelectionFixtures.svdCalibration(model, kvHeads: n).save(to: SVDHeads.Config.exampleFile(path, kvHeads: n))
        }
        // Head scores for duo_attention: seeded, distinct, [layers, query heads].
        var rng = SeededRandom(seed: 5)
        let L = model.config.layers, H = model.config.heads
        try! HeadScoreFile(layers: L, queryHeads: H, maps: ["retrieval_score": (0..<(L * H)).map { _ in rng.nextUniform() }])
            .save(to: DuoAttention.Config.exampleFile(path))
        // NAtS types per vocabulary id for nats: ids divisible by 13 global, by 7 local, the rest sliding.
        let V = model.config.vocabSize
        try! NAtSTypeFile(vocabularySize: V, types: (0..<V).map { $0 % 13 == 0 ? 0 : $0 % 7 == 0 ? 1 : 2 })
            .save(to: NAtS.Config.exampleFile(path))
        return path
    }()

    /// Prefill then decode; `check` sees the cache after the prefill (decode steps 0) and after each
    /// decode step. Returns every logit.
    public static func run(_ policy: CachePolicy, check: (KVCache, _ decodeSteps: Int) -> Void = { _, _ in }) -> [Float] {
        let m = model
        let cache = m.makeCache(policy: policy)
        var logits = m.forward(prompt, startPosition: 0, cache: cache, phase: .prefill)
        check(cache, 0)
        for (i, t) in decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: prompt.count + i, cache: cache, phase: .decode)
            check(cache, i + 1)
        }
        return logits
    }

    /// What is wrong with the stores, one line each (empty: nothing): a position held twice, an order
    /// claimed that positions do not have (in each section: MiniCache's merged prefix, then the rows
    /// after it), bytes reported that differ from the stores', float rows whose payload is not
    /// count x d x 2 x the element's bytes.
    public static func storeProblems(_ cache: KVCache) -> [String] {
        var out: [String] = [], payload = 0
        for (l, layer) in cache.stores.enumerated() {
            for (h, s) in layer.enumerated() {
                payload += s.payloadBytes
                let pos = (0..<s.count).map { s.position($0) }
                if Set(pos).count != pos.count { out.append("layer \(l) head \(h) holds a position twice") }
                let prefix = (s.rows as? MergedRows)?.merged.count ?? 0
                if s.isOrdered && [Array(pos[..<prefix]), Array(pos[prefix...])].contains(where: { $0 != $0.sorted() }) {
                    out.append("layer \(l) head \(h) claims order but positions are not increasing")
                }
                if s.rows is (any ElementRows) && s.payloadBytes != s.count * s.headDim * 2 * cache.kvDType.bytes {
                    out.append("layer \(l) head \(h): \(cache.kvDType.rawValue) payload \(s.payloadBytes) for \(s.count) tokens")
                }
            }
        }
        if cache.stats.bytesStored != payload { out.append("reported \(cache.stats.bytesStored) bytes stored, the stores hold \(payload)") }
        return out
    }

    /// Tokens each KV head holds, summed over layers.
    public static func heldPerHead(_ cache: KVCache) -> [Int] {
        (0..<cache.shape.kvHeads).map { h in cache.stores.reduce(0) { $0 + $1[h].count } }
    }

    /// The largest absolute difference, relative to the largest magnitude of `b`.
    public static func relativeError(_ a: [Float], _ b: [Float]) -> Float {
        let scale = b.map { abs($0) }.max() ?? 1
        return (zip(a, b).map { abs($0 - $1) }.max() ?? .infinity) / max(scale, .leastNormalMagnitude)
    }
}
