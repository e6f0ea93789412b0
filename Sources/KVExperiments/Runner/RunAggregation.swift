import Foundation
import KVCacheCore
import KVModel
import KVPolicies

/// What one (policy, sample) evaluation contributes to its run: the sample's figures, computed as
/// soon as the sample ran so that the outcome (logits rows, probes, the reference's prefill
/// recording) can be dropped.
struct SampleResult {
    /// Per-sample values in the order they are recorded.
    var values: [(String, Double)] = []
    var score = SampleScore()
    /// Attention recall and output error per (layer, query head) (fidelity).
    var recall: [Float]?, outputError: [Float]?
    /// Payload bytes per (layer, stored KV head) of the policy's own stores and of the reference's.
    var ownBytes: [[Int]] = [], referenceOwnBytes: [[Int]] = []
    /// Kept positions (only when the config asks for retention maps).
    var retained: [[[Int]]]?
    var storedHeads = 0
    /// The generated text as scored (generation tasks).
    var text: String?
    /// Wall seconds of this evaluation (the full policy: the reference's).
    var seconds = 0.0
    /// How the policy's prefill ran: "shared" (replayed), "shared_prefix" (lower layers replayed), "own".
    var prefillMode = "own"
    /// The query heads the run switched off (head ablation); nil = none.
    var headMask: HeadMask?

    init(point: GridPoint, sample s: TaskSample, out: SampleOutcome, reference ref: SampleOutcome,
         model c: ModelConfig, keepRetained: Bool, seconds: Double, headMask: HeadMask? = nil) {
        let kind = point.task.kind
        func add(_ k: String, _ v: Double) { values.append((k, v)) }
        score = TaskScoring.sample(kind, sample: s, text: out.text, rows: out.rows, referenceRows: ref.rows)
        values = score.values
        if !kind.isTeacherForced { text = out.text }
        storedHeads = out.retained.first?.count ?? c.kvHeads
        if let rp = ref.probe, let pp = out.probe {
            let r = Metrics.attentionRecall(reference: rp, policy: pp, layers: c.layers, heads: c.heads, group: c.heads / storedHeads)
            let e = Metrics.outputError(reference: rp, policy: pp, layers: c.layers, heads: c.heads, headDim: c.headDim)
            (recall, outputError) = (r, e)
            add("attention_recall", Double(r.reduce(0, +)) / Double(r.count))
            add("attn_output_rel_error", Double(e.reduce(0, +)) / Double(e.count))
        }
        // Memory and traffic, read from the stores.
        add("kv_bytes_stored", Double(out.stats.bytesStored))
        add("kv_bytes_stored_peak", Double(out.stats.peakBytesStored))
        add("kv_bytes_full", Double(ref.stats.bytesStored))
        add("compression", Double(out.stats.bytesStored) / Double(max(ref.stats.bytesStored, 1)))
        let total = out.stats.bytesStored + out.stats.metadataBytes, fullTotal = ref.stats.bytesStored + ref.stats.metadataBytes
        add("kv_bytes_total", Double(total))
        add("kv_bytes_total_full", Double(fullTotal))
        add("memory_fraction", Double(total) / Double(max(fullTotal, 1)))
        add("kv_bytes_read_per_step", out.stats.meanDecodeBytesRead)
        add("kv_bytes_read_prefill", Double(out.stats.prefillBytesRead))   // docs/selection.md, "Bytes read in prefill"
        add("read_fraction", ref.stats.meanDecodeBytesRead > 0 ? out.stats.meanDecodeBytesRead / ref.stats.meanDecodeBytesRead : .nan)
        add("metadata_bytes", Double(out.stats.metadataBytes))
        add("tokens_seen", Double(out.stats.tokensSeen))
        let compressed = RunFractions.compressedLength(s, task: point.task)
        add("context_kept_fraction", RunFractions.contextKept(out.retained, compressedLength: compressed))
        add("stored_fraction", out.finalTokens / Double(max(out.stats.tokensSeen, 1)))
        add("prefill_s_per_token", out.prefillSeconds / Double(max(out.prefillTokens, 1)))
        add("prefill_replay_s_per_token", out.replaySeconds.map { $0 / Double(max(out.prefillTokens, 1)) } ?? .nan)
        add("decode_s_per_token", out.decodeSteps > 0 ? out.decodeSeconds / Double(out.decodeSteps) : .nan)
        if !kind.isTeacherForced { add("generated_tokens", Double(out.generated.count)) }
        for (key, v) in out.policyMetrics { add(key, v) }              // the policy's own (QAdA: qada_full_fraction)
        for (key, v) in s.meta.sorted(by: { $0.key < $1.key }) { add("meta_" + key, v) }
        (ownBytes, referenceOwnBytes) = (out.ownBytes, ref.ownBytes)
        retained = keepRetained ? out.retained : nil
        self.seconds = seconds
        self.headMask = headMask
        prefillMode = out.replaySeconds != nil ? "shared" : (out.resumedAt != nil ? "shared_prefix" : "own")
    }
}

extension SweepRunner {
    /// Turns one grid point's per-sample results (in sample order) into its RunRecord.
    func aggregate(_ point: GridPoint, model c: ModelConfig, results: [SampleResult], textSource: String = "") -> RunRecord {
        let start = DispatchTime.now().uptimeNanoseconds
        var per: [String: [Double]] = [:]
        let n = results.count
        var recall = [Float](repeating: 0, count: c.layers * c.heads)
        var outErr = recall
        let storedHeads = results.first?.storedHeads ?? c.kvHeads   // fewer under head pooling
        var kept = [Float](repeating: 0, count: c.layers * storedHeads)
        var klAll: [Double] = []
        var nllSum = 0.0, nllRefSum = 0.0, labelCount = 0.0
        let kind = point.task.kind
        for r in results {
            for (k, v) in r.values { per[k, default: []].append(v) }
            klAll += r.score.kls
            nllSum += r.score.nll; nllRefSum += r.score.nllReference; labelCount += r.score.labels
            if let rr = r.recall, let ee = r.outputError {
                for j in recall.indices { recall[j] += rr[j] / Float(n); outErr[j] += ee[j] / Float(n) }
            }
            RunFractions.addKept(&kept, policy: r.ownBytes, reference: r.referenceOwnBytes, samples: n)
        }

        var scalars: [RunRecord.Metric] = [.init("budget_value", point.policy.budgetForm?.value ?? .nan)]
        let order = ["score", "kl_mean", "top1_agreement", "attention_recall", "attn_output_rel_error", "ppl", "ppl_full",
                     "compression", "memory_fraction", "context_kept_fraction", "stored_fraction", "kv_bytes_stored",
                     "kv_bytes_stored_peak", "kv_bytes_full", "kv_bytes_total", "kv_bytes_total_full", "kv_bytes_read_per_step",
                     "read_fraction", "metadata_bytes", "tokens_seen", "prefill_s_per_token", "decode_s_per_token"]
        for k in order + per.keys.filter({ !order.contains($0) && !$0.hasPrefix("meta_") }).sorted() {
            guard let v = per[k] else { continue }
            var agg: Double
            switch k {
            case "kv_bytes_stored_peak": agg = v.max() ?? .nan
            case "ppl" where labelCount > 0: agg = exp(nllSum / labelCount)         // exp(mean NLL over every token)
            case "ppl_full" where labelCount > 0: agg = exp(nllRefSum / labelCount)
            case "score" where kind == .perplexity && labelCount > 0: agg = -(nllSum - nllRefSum) / labelCount
            default: agg = Metrics.mean(v)
            }
            scalars.append(.init(k, agg))
            if k == "score" { scalars += RunFractions.interval(v, kind: kind) }
            if k == "ppl", let nlls = per["nll_mean"] {
                let t = Intervals.t(nlls)
                scalars += [.init("ppl_lo", exp(t.lo)), .init("ppl_hi", exp(t.hi))]
            }
        }
        if !klAll.isEmpty {
            scalars.append(.init("kl_max", klAll.max()!))
            scalars.append(.init("kl_p95", Metrics.percentile(klAll, 0.95)))
        }
        let aggregation = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        scalars.append(.init("run_wall_s", results.reduce(0) { $0 + $1.seconds } + aggregation))
        var grids = [RunRecord.Grid("kept_fraction", kept, layers: c.layers, heads: storedHeads)]
        if let mask = results.first?.headMask {   // head ablation: which query heads were switched off
            var ablated = [Float](repeating: 0, count: c.layers * c.heads)
            for (l, h) in mask.pairs { ablated[l * c.heads + h] = 1 }
            grids.append(.init("ablated_heads", ablated, layers: c.layers, heads: c.heads))
            scalars.append(.init("ablated_heads", Double(mask.count)))
        }
        if kind == .fidelity {
            grids.append(.init("attention_recall", recall, layers: c.layers, heads: c.heads))
            grids.append(.init("attn_output_rel_error", outErr, layers: c.layers, heads: c.heads))
        }
        var retention: RunRecord.Retention? = nil
        if config.retentionMaps {
            let maps = results.map { $0.retained ?? [] }
            let maxKept = maps.flatMap { $0.flatMap { $0.map(\.count) } }.max() ?? 0
            var flat: [Int32] = []
            for o in maps { for l in o { for h in l {
                flat += h.map(Int32.init) + Array(repeating: -1, count: maxKept - h.count)
            } } }
            retention = .init(positions: flat, shape: [maps.count, c.layers, storedHeads, maxKept])
        }
        var record = RunRecord(index: point.index, key: point.key, modelID: point.model.id, taskKind: kind.rawValue,
                               context: point.task.context, seed: Int(point.task.seed), policyKind: point.policy.kind,
                               policyFamily: point.policy.family, policyLabel: point.policy.label,
                               policyParams: point.policy.parametersJSON, status: "ok", scalars: scalars,
                               perSample: per.keys.sorted().map { RunRecord.Series($0, per[$0]!) },
                               perLayerHead: grids, retention: retention)
        if !kind.isTeacherForced { record.texts = [.init("generated", results.map { $0.text ?? "" })] }
        record.info = RunFractions.info(point, textSource: textSource)
            + [.init("prefill", results.first?.prefillMode ?? "own")]
        return record
    }
}
