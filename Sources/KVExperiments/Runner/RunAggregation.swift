import Foundation
import KVCache
import KVModel
import KVPolicies

extension SweepRunner {
    /// Runs one grid point's policy over every sample and turns the outcomes into a RunRecord.
    /// `referenceSeconds`: what the full-cache reference took (the full policy's wall time).
    func runPoint(_ point: GridPoint, model m: LlamaModel, codec: TextCodec?, samples: [TaskSample],
                  refs: [SampleOutcome], referenceSeconds: Double = 0, textSource: String = "") throws -> RunRecord {
        let start = DispatchTime.now().uptimeNanoseconds
        let mask = try point.task.ablation?.resolve(layers: m.config.layers, queryHeads: m.config.heads)
        let isFull = point.policy == .full && mask == nil
        _ = try point.policy.make(model: m.cacheShape)
        let outs = isFull ? refs : try samples.map { s in
            try evaluate(m, policy: try point.policy.make(), sample: s, task: point.task, reference: false, headMask: mask)
        }
        let c = m.config
        var per: [String: [Double]] = [:]
        func add(_ k: String, _ v: Double) { per[k, default: []].append(v) }
        var recall = [Float](repeating: 0, count: c.layers * c.heads)
        var outErr = recall
        let storedHeads = outs.first?.retained.first?.count ?? c.kvHeads   // fewer under head pooling
        var kept = [Float](repeating: 0, count: c.layers * storedHeads)
        var klAll: [Double] = []
        var nllSum = 0.0, nllRefSum = 0.0, labelCount = 0.0
        let kind = point.task.kind

        for (i, (s, out)) in zip(samples, outs).enumerated() {
            let ref = refs[i]
            // Task score.
            if let scorer = TaskFactory.scorer(for: kind) {
                let text = codec?.decode(out.generated) ?? out.generated.map(String.init).joined(separator: " ")
                add("score", scorer(text, s))
                if let extra = TaskFactory.scores(for: kind, output: text, sample: s) {
                    for (k, v) in extra.extra.sorted(by: { $0.key < $1.key }) { add(k, v) }
                }
            }
            // Teacher-forced comparisons at labelled / evaluated rows.
            if kind.isTeacherForced {
                var kls: [Double] = [], agree = 0.0, n = 0.0, nll = 0.0, nllRef = 0.0, hits = 0.0, labels = 0.0
                for (pos, row) in out.rows.sorted(by: { $0.key < $1.key }) {
                    guard let refRow = ref.rows[pos] else { continue }
                    kls.append(Metrics.kl(full: refRow, policy: row))
                    agree += Metrics.argmax(refRow) == Metrics.argmax(row) ? 1 : 0
                    n += 1
                }
                for label in s.labels {
                    guard let row = out.rows[label.position], let refRow = ref.rows[label.position] else { continue }
                    nll += Metrics.nll(row, label.token); nllRef += Metrics.nll(refRow, label.token)
                    hits += Metrics.argmax(row) == label.token ? 1 : 0
                    labels += 1
                }
                let l = max(labels, 1)
                add("kl_mean", Metrics.mean(kls)); add("top1_agreement", n > 0 ? agree / n : .nan)
                klAll += kls
                switch kind {
                case .perplexity:
                    // Per window: its perplexity and mean NLL; the run's PPL pools every token (below).
                    add("ppl", exp(nll / l)); add("ppl_full", exp(nllRef / l))
                    add("nll_mean", nll / l); add("nll_full_mean", nllRef / l)
                    add("score", -(nll - nllRef) / l)            // -log(PPL / PPL_full) of the window
                    nllSum += nll; nllRefSum += nllRef; labelCount += labels
                case .mqar: add("score", hits / l)
                default: add("score", n > 0 ? agree / n : .nan)
                }
            }
            if let rp = ref.probe, let pp = out.probe {
                let r = Metrics.attentionRecall(reference: rp, policy: pp, layers: c.layers, heads: c.heads, group: c.heads / storedHeads)
                let e = Metrics.outputError(reference: rp, policy: pp, layers: c.layers, heads: c.heads, headDim: c.headDim)
                for j in recall.indices { recall[j] += r[j] / Float(samples.count); outErr[j] += e[j] / Float(samples.count) }
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
            add("decode_s_per_token", out.decodeSteps > 0 ? out.decodeSeconds / Double(out.decodeSteps) : .nan)
            for (key, v) in s.meta.sorted(by: { $0.key < $1.key }) { add("meta_" + key, v) }
            RunFractions.addKept(&kept, policy: out.ownBytes, reference: ref.ownBytes, samples: samples.count)
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
        let evalSeconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        scalars.append(.init("run_wall_s", isFull ? referenceSeconds + evalSeconds : evalSeconds))
        var grids = [RunRecord.Grid("kept_fraction", kept, layers: c.layers, heads: storedHeads)]
        if let mask {   // head ablation: which query heads were switched off
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
            let maxKept = outs.flatMap { $0.retained.flatMap { $0.map(\.count) } }.max() ?? 0
            var flat: [Int32] = []
            for o in outs { for l in o.retained { for h in l {
                flat += h.map(Int32.init) + Array(repeating: -1, count: maxKept - h.count)
            } } }
            retention = .init(positions: flat, shape: [outs.count, c.layers, storedHeads, maxKept])
        }
        var record = RunRecord(index: point.index, key: point.key, modelID: point.model.id, taskKind: kind.rawValue,
                               context: point.task.context, seed: Int(point.task.seed), policyKind: point.policy.kind,
                               policyFamily: point.policy.family, policyLabel: point.policy.label,
                               policyParams: point.policy.parametersJSON, status: "ok", scalars: scalars,
                               perSample: per.keys.sorted().map { RunRecord.Series($0, per[$0]!) },
                               perLayerHead: grids, retention: retention)
        record.info = RunFractions.info(point, textSource: textSource)
        return record
    }
}
