import Foundation

/// The last line of defence against "ok, score nan": a run whose headline metrics are not finite
/// is recorded as failed. (The model's forward pass already stops on non-finite logits; this
/// catches anything else, e.g. a metric computed from empty data.)
enum FiniteMetrics {
    /// Metrics that are finite for every valid run. Others may be NaN by definition (e.g.
    /// `read_fraction` and `decode_s_per_token` of a run without decode steps).
    static let required: Set<String> = [
        "score", "kl_mean", "kl_max", "kl_p95", "top1_agreement", "attention_recall", "attn_output_rel_error",
        "ppl", "ppl_full", "compression", "kv_bytes_stored", "kv_bytes_stored_peak", "kv_bytes_full",
        "kv_bytes_read_per_step", "metadata_bytes", "tokens_seen",
    ]

    struct Failure: LocalizedError {
        var metric: String, value: Double
        var errorDescription: String? { "non-finite metric '\(metric)' (\(value)): the run produced no valid number" }
    }

    /// Throws for the first required metric of `record` that is NaN or infinite.
    static func check(_ record: RunRecord) throws {
        guard record.status == "ok" else { return }
        if let bad = record.scalars.first(where: { required.contains($0.name) && !$0.value.isFinite }) {
            throw Failure(metric: bad.name, value: bad.value)
        }
    }
}
