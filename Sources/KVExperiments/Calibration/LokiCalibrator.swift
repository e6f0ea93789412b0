import Foundation
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// Runs a model densely over calibration tokens and fits Loki's per-(layer, KV head) PCA of the
/// post-RoPE keys (`LokiCalibration.fit`). Keys are collected by a `KeyCovarianceRecorder` policy
/// (the cache hands it every appended key), so memory stays O(L Hkv d^2) plus one sequence's cache.
public enum LokiCalibrator {
    /// Where calibration tokens come from.
    public enum Source: Sendable {
        case tokens([Int], label: String)
        /// `count` uniform random token ids from a seeded generator (synthetic models).
        case random(count: Int, seed: UInt64)
    }

    /// The token ids of a source for a vocabulary of size `vocab`.
    public static func tokens(_ source: Source, vocab: Int) -> (ids: [Int], label: String) {
        switch source {
        case .tokens(let ids, let label): return (ids, label)
        case .random(let n, let seed):
            var rng = SeededRandom(seed: seed)
            return ((0..<n).map { _ in Int(rng.next() % UInt64(vocab)) }, "random tokens, seed \(seed)")
        }
    }

    /// Fits the calibration: the tokens are split into sequences of `sequenceLength`, each run as
    /// a fresh prefill (positions from 0), all keys of all sequences pooled per (layer, KV head).
    public static func calibrate(model: LlamaModel, source: Source, sequenceLength: Int = 2048,
                                 modelLabel: String, provenance: [String: String] = [:]) throws -> LokiCalibration {
        precondition(sequenceLength > 0, "sequence length must be positive")
        let (ids, label) = tokens(source, vocab: model.config.vocabSize)
        guard ids.count >= 2 else {
            throw PolicyError.invalidParameter(policy: Loki.Config.descriptor.name, field: "tokens", message: "need at least 2 calibration tokens, got \(ids.count)")
        }
        if let bad = ids.first(where: { $0 < 0 || $0 >= model.config.vocabSize }) {
            throw PolicyError.invalidParameter(policy: Loki.Config.descriptor.name, field: "tokens",
                                               message: "token \(bad) is outside the vocabulary (size \(model.config.vocabSize))")
        }
        let recorder = KeyCovarianceRecorder()
        let cache = model.makeCache(policy: recorder, initialCapacity: min(sequenceLength, ids.count))
        var start = 0, sequences = 0
        while start < ids.count {
            let end = min(start + sequenceLength, ids.count)
            cache.reset()
            _ = model.forward(Array(ids[start..<end]), startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            start = end; sequences += 1
        }
        return try LokiCalibration.fit(recorder, attributes: provenance.merging([
            "model": modelLabel, "token_source": label, "sequences": "\(sequences)", "tokens_used": "\(ids.count)",
            "sequence_length": "\(sequenceLength)", "created": ISO8601DateFormatter().string(from: Date()),
        ]) { _, new in new })
    }
}
