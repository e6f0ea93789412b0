// SVD KV-head compression: calibration run and weight folding.
// Paper: Yu et al., "Effectively Compress KV Heads for LLM", arXiv 2406.07056 (no public code found).
import Foundation
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// Runs a model densely over calibration tokens and fits `SVDHeadsCalibration` (the second
/// moments are collected by a `GroupMomentRecorder` policy: O(L Hkv' (r d)^2) memory).
public enum SVDHeadsCalibrator {
    public static func calibrate(model: LlamaModel, storedKVHeads: Int, source: LokiCalibrator.Source,
                                 sequenceLength: Int = 2048, attributes: [String: String] = [:]) throws -> SVDHeadsCalibration {
        let c = model.config
        guard storedKVHeads >= 1, c.kvHeads % storedKVHeads == 0 else {
            throw PolicyError.invalidParameter(policy: "svd_heads", field: "kv_heads",
                message: "expected a divisor of the model's \(c.kvHeads) KV heads, got \(storedKVHeads)")
        }
        guard c.headDim % 2 == 0 else {
            throw PolicyError.invalidParameter(policy: "svd_heads", field: "head_dim", message: "RoPE needs an even head_dim, got \(c.headDim)")
        }
        let (ids, label) = LokiCalibrator.tokens(source, vocab: c.vocabSize)
        guard ids.count >= 2, ids.allSatisfy({ $0 >= 0 && $0 < c.vocabSize }) else {
            throw PolicyError.invalidParameter(policy: "svd_heads", field: "tokens",
                                               message: "need at least 2 calibration tokens inside the vocabulary (size \(c.vocabSize))")
        }
        let rec = GroupMomentRecorder(storedKVHeads: storedKVHeads)
        let cache = model.makeCache(policy: rec, initialCapacity: min(sequenceLength, ids.count))
        var start = 0, sequences = 0
        while start < ids.count {
            let end = min(start + sequenceLength, ids.count)
            cache.reset()
            _ = model.forward(Array(ids[start..<end]), startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            start = end; sequences += 1
        }
        var attrs = attributes
        attrs["token_source"] = label
        attrs["sequences"] = "\(sequences)"
        attrs["sequence_length"] = "\(sequenceLength)"
        attrs["created"] = attrs["created"] ?? ISO8601DateFormatter().string(from: Date())
        return try SVDHeadsCalibration.fit(rec, attributes: attrs)
    }

    /// The weight transform the cache-side projection is equal to: a new model with the
    /// calibration's KV heads whose W_k, W_v (and biases) are the projected group blocks and whose
    /// W_q rows and W_o columns absorb the per-query-head maps (conj(u) per RoPE frequency; U_m).
    /// Running it with the full cache gives the same logits as the original model with
    /// `policy: svd_heads` (tests check it).
    public static func foldedModel(_ model: LlamaModel, _ cal: SVDHeadsCalibration) -> LlamaModel {
        let c = model.config, d = c.headDim, half = d / 2, D = c.hiddenSize, r = cal.ratio, hs = cal.storedKVHeads
        let g = c.heads / c.kvHeads
        precondition(cal.layers == c.layers && cal.modelKVHeads == c.kvHeads && cal.headDim == d, "calibration does not fit the model")
        var config = c
        config.kvHeads = hs
        var weights = model.weights
        for l in 0..<c.layers {
            let w = model.weights.layers[l]
            var nw = w
            // The folded matrices are new products: computed on the dequantized weights and held as
            // Float32 (a Float32 model's bits are unchanged by the round trip).
            let (wq, wk, wv, wo) = (w.wq.dequantized(), w.wk.dequantized(), w.wv.dequantized(), w.wo.dequantized())
            var (nq, no) = (wq, wo)
            // Keys: rows of W_k (and b_k) combined per frequency, like the stored keys.
            func projectKeyRows(_ src: [Float], width: Int) -> [Float] {
                var out = [Float](repeating: 0, count: hs * d * width)
                for s in 0..<hs { for m in 0..<r { for j in 0..<half {
                    let a = cal.keyRe[l][s][j * r + m], b = cal.keyIm[l][s][j * r + m]
                    let zr = ((s * r + m) * d + j) * width, zi = ((s * r + m) * d + j + half) * width
                    let yr = (s * d + j) * width, yi = (s * d + j + half) * width
                    for x in 0..<width {
                        out[yr + x] += a * src[zr + x] + b * src[zi + x]
                        out[yi + x] += a * src[zi + x] - b * src[zr + x]
                    }
                } } }
                return out
            }
            nw.wk = WeightMatrix(floats: projectKeyRows(wk, width: D), rows: hs * d, cols: D)
            nw.bk = w.bk.map { projectKeyRows($0, width: 1) }
            // Values: W_v' = U^T W_v_group (rows), b_v' likewise.
            func projectValueRows(_ src: [Float], width: Int) -> [Float] {
                var out = [Float](repeating: 0, count: hs * d * width)
                for s in 0..<hs {
                    let u = cal.valueBasis[l][s]
                    for i in 0..<(r * d) { for col in 0..<d {
                        let coef = u[i * d + col]
                        let src0 = ((s * r) * d + i) * width, dst = (s * d + col) * width
                        for x in 0..<width { out[dst + x] += coef * src[src0 + x] }
                    } }
                }
                return out
            }
            nw.wv = WeightMatrix(floats: projectValueRows(wv, width: D), rows: hs * d, cols: D)
            nw.bv = w.bv.map { projectValueRows($0, width: 1) }
            // Queries (rows of W_q, b_q): multiplied by conj(u_{j,m}) per frequency. Outputs (columns of W_o): U_m.
            for qh in 0..<c.heads {
                let h = qh / g, s = h / r, m = h % r, u = cal.valueBasis[l][s]
                for j in 0..<half {
                    let a = cal.keyRe[l][s][j * r + m], b = cal.keyIm[l][s][j * r + m]
                    let rr = qh * d + j, ri = qh * d + j + half
                    for x in 0..<D {
                        let wr = wq[rr * D + x], wi = wq[ri * D + x]
                        nq[rr * D + x] = a * wr + b * wi
                        nq[ri * D + x] = a * wi - b * wr
                    }
                    if let bq = w.bq { nw.bq![rr] = a * bq[rr] + b * bq[ri]; nw.bq![ri] = a * bq[ri] - b * bq[rr] }
                }
                let width = c.heads * d
                for row in 0..<D { for col in 0..<d {
                    var acc: Float = 0
                    for x in 0..<d { acc += u[(m * d + x) * d + col] * wo[row * width + qh * d + x] }
                    no[row * width + qh * d + col] = acc
                } }
            }
            nw.wq = WeightMatrix(floats: nq, rows: w.wq.rows, cols: D)
            nw.wo = WeightMatrix(floats: no, rows: D, cols: w.wo.cols)
            weights.layers[l] = nw
        }
        return LlamaModel(config: config, weights: weights)
    }
}
