import Foundation

/// One sample's task scores, from what a run produced: generation tasks score the decoded text
/// (`TaskScoring.scores`); teacher-forced tasks compare the policy's logits rows with the
/// full-cache reference's and with the sample's labels. The runner only collects and aggregates.
struct SampleScore {
    /// Per-sample values in the order they are recorded (`score` and the task's other figures).
    var values: [(String, Double)] = []
    /// KL(full || policy) at every compared row (teacher-forced tasks; pooled into kl_max, kl_p95).
    var kls: [Double] = []
    /// Summed NLL of the labels under the policy and under the full cache, and their count
    /// (perplexity pools them over every evaluated token of every window).
    var nll = 0.0, nllReference = 0.0, labels = 0.0
}

extension TaskScoring {
    /// The scores of one sample. `text`: the generated text as scored (generation tasks);
    /// `rows`/`referenceRows`: position -> logits [V] of the policy and of the full cache
    /// (teacher-forced tasks).
    static func sample(_ kind: TaskKind, sample s: TaskSample, text: String,
                       rows: [Int: [Float]], referenceRows: [Int: [Float]]) -> SampleScore {
        var out = SampleScore()
        func add(_ k: String, _ v: Double) { out.values.append((k, v)) }
        if let scores = scores(kind, output: text, sample: s) {
            add("score", scores.score)
            for (k, v) in scores.extra.sorted(by: { $0.key < $1.key }) { add(k, v) }
        }
        guard kind.isTeacherForced else { return out }
        var kls: [Double] = [], agree = 0.0, n = 0.0, nll = 0.0, nllRef = 0.0, hits = 0.0, labels = 0.0
        for (pos, row) in rows.sorted(by: { $0.key < $1.key }) {
            guard let refRow = referenceRows[pos] else { continue }
            kls.append(Metrics.kl(full: refRow, policy: row))
            agree += Metrics.argmax(refRow) == Metrics.argmax(row) ? 1 : 0
            n += 1
        }
        for label in s.labels {
            guard let row = rows[label.position], let refRow = referenceRows[label.position] else { continue }
            nll += Metrics.nll(row, label.token); nllRef += Metrics.nll(refRow, label.token)
            hits += Metrics.argmax(row) == label.token ? 1 : 0
            labels += 1
        }
        let l = max(labels, 1)
        add("kl_mean", Metrics.mean(kls)); add("top1_agreement", n > 0 ? agree / n : .nan)
        out.kls = kls
        switch kind {
        case .perplexity:
            // Per window: its perplexity and mean NLL; the run's PPL pools every token.
            add("ppl", exp(nll / l)); add("ppl_full", exp(nllRef / l))
            add("nll_mean", nll / l); add("nll_full_mean", nllRef / l)
            add("score", -(nll - nllRef) / l)            // -log(PPL / PPL_full) of the window
            (out.nll, out.nllReference, out.labels) = (nll, nllRef, labels)
        case .mqar: add("score", hits / l)
        default: add("score", n > 0 ? agree / n : .nan)
        }
        return out
    }
}
