import Foundation
import KVCacheCore
import KVModel
import KVPolicies

/// Runs KVSharer's strategy search (`KVSharerSearch.search`) on a model: the calibration tokens
/// are split into sequences of `sequenceLength`, each a fresh prefill from position 0; every
/// candidate map re-runs all of them and compares the final normed hidden states [T, D] with the
/// dense run's (cosine of the flattened states per sequence, averaged over sequences).
public enum KVSharerCalibrator {
    public static func calibrate(model: LlamaModel, source: LokiCalibrator.Source, sequenceLength: Int = 256,
                                 threshold: Double = 0.5, maxShared: Int, modelLabel: String, provenance: [String: String] = [:]) throws -> KVSharerMap {
        precondition(sequenceLength > 0, "sequence length must be positive")
        let (ids, label) = LokiCalibrator.tokens(source, vocab: model.config.vocabSize)
        guard !ids.isEmpty else {
            throw PolicyError.invalidParameter(policy: "kvsharer", field: "tokens", message: "need at least 1 calibration token")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
            throw PolicyError.invalidParameter(policy: "kvsharer", field: "tokens",
                                               message: "token \(bad) is outside the vocabulary (size \(model.config.vocabSize))")
        }
        let sequences = stride(from: 0, to: ids.count, by: sequenceLength).map { Array(ids[$0..<min($0 + sequenceLength, ids.count)]) }
        return try KVSharerSearch.search(
            layers: model.config.layers, threshold: threshold, maxShared: maxShared, tokens: ids.count,
            attributes: provenance.merging(["model": modelLabel, "token_source": label, "sequences": "\(sequences.count)",
                                             "tokens_used": "\(ids.count)", "sequence_length": "\(sequenceLength)",
                                             "created": ISO8601DateFormatter().string(from: Date())]) { _, new in new },
            forward: { policy in
                let cache = model.makeCache(policy: policy, initialCapacity: min(sequenceLength, ids.count))
                return sequences.map { seq in
                    cache.reset()
                    return model.forward(seq, startPosition: 0, cache: cache, phase: .prefill, logits: .hidden)
                }
            })
    }
}
