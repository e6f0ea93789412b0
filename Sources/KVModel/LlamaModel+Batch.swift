import Foundation
import KVTensor
import KVCacheCore

extension LlamaModel {
    /// One decode step of several independent sequences in lockstep: sequence i feeds `tokens[i]`
    /// at `positions[i]` into its own cache `caches[i]` and gets its next-token logits [V].
    ///
    /// The matrix products pass every sequence's row through each block of weight rows while it is
    /// in cache (`WeightMatrix.productsShared`: `BLAS.linearShared` for Float32 matrices, the
    /// matrix-vector kernels of single-sequence decoding for packed and 16-bit ones), so the weights stream from memory once per step instead of
    /// once per sequence; attention runs per sequence on its own cache, and each cache's step ends,
    /// exactly as `forward(_:phase: .decode)` does. Every sequence's logits, cache and measured
    /// figures are bit for bit those of decoding it alone with `forward` (BatchDecodeTests).
    /// No finiteness checks: see `decodeBatchChecked`.
    public func decodeBatch(_ tokens: [Int], positions: [Int], caches: [KVCache],
                            logits request: LogitsRequest = .last) -> [[Float]] {
        step(tokens, positions: positions, caches: caches, masks: Array(repeating: headMask, count: tokens.count),
             request: request, check: false).map(\.logits)
    }

    /// `decodeBatch` with each sequence's own head mask (`headMasks[i]`; nil, or no array: the
    /// model's `headMask`, as `forwardChecked` takes it) and the checks of `forwardChecked`, per sequence: a sequence
    /// whose hidden state or logits hold a NaN or ±infinity gets its `NonFiniteError` (its cache
    /// has taken the token), the others their logits, as if each ran alone.
    public func decodeBatchChecked(_ tokens: [Int], positions: [Int], caches: [KVCache], headMasks: [HeadMask?]? = nil,
                                   logits request: LogitsRequest = .last) -> [Result<[Float], NonFiniteError>] {
        precondition(headMasks.map { $0.count == tokens.count } ?? true, "decodeBatchChecked: one head mask per sequence")
        return step(tokens, positions: positions, caches: caches, masks: headMasks?.map { $0 ?? headMask } ?? Array(repeating: headMask, count: tokens.count),
                    request: request, check: true).map { r in r.nonFinite.map { .failure($0) } ?? .success(r.logits) }
    }

    private func step(_ tokens: [Int], positions: [Int], caches: [KVCache], masks: [HeadMask?], request: LogitsRequest,
                      check: Bool) -> [(logits: [Float], nonFinite: NonFiniteError?)] {
        let n = tokens.count
        precondition(positions.count == n && caches.count == n, "decodeBatch: one token, position and cache per sequence")
        precondition(tokens.allSatisfy { $0 >= 0 && $0 < config.vocabSize }, "token id out of vocabulary")
        guard n > 0 else { return [] }
        let c = config, D = c.hiddenSize, d = c.headDim, V = c.vocabSize
        let qDim = c.heads * d, kvDim = c.kvHeads * d, I = c.intermediateSize
        let rows = n
        var nonFinite = [NonFiniteError?](repeating: nil, count: n)
        /// Records the first non-finite value of row i of x [n, width] (per sequence, as `forwardChecked`).
        func checkRows(_ x: UnsafePointer<Float>, width: Int, layer: Int?) {
            guard check else { return }
            for i in 0..<n where nonFinite[i] == nil {
                if let j = Ops.firstNonFinite(x + i * width, count: width) {
                    nonFinite[i] = NonFiniteError(layer: layer, position: positions[i], value: x[i * width + j])
                }
            }
        }
        let ws = Workspace(rows: rows, hidden: D, qDim: qDim, kvDim: kvDim, intermediate: I, tile: 0)
        defer { ws.free() }
        for (p, width) in [(ws.x, D), (ws.h, D), (ws.q, qDim), (ws.attn, qDim), (ws.k, kvDim), (ws.v, kvDim), (ws.gate, I), (ws.up, I)] {
            p.initialize(repeating: 0, count: rows * width)
        }
        for (r, t) in tokens.enumerated() { weights.embedding.dequantizeRows(t..<(t + 1), into: ws.x + r * D) }
        let pos = positions
        for (l, w) in weights.layers.enumerated() {
            w.inputNorm.withUnsafeBufferPointer { Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h) }
            tiles(ws.h, rows, w.wq, w.bq, ws.q)
            tiles(ws.h, rows, w.wk, w.bk, ws.k)
            tiles(ws.h, rows, w.wv, w.bv, ws.v)
            rope.apply(ws.q, rows: rows, heads: c.heads, positions: pos)
            rope.apply(ws.k, rows: rows, heads: c.kvHeads, positions: pos)
            for i in 0..<n {
                caches[i].pendingRows = 0
                applyHeadMask(masks[i], layer: l, phase: .decode, rows: 1, queries: ws.q + i * qDim)
                caches[i].attention(layer: l, phase: .decode, rows: 1, isStepEnd: true, queries: ws.q + i * qDim,
                                    keys: ws.k + i * kvDim, values: ws.v + i * kvDim, positions: [positions[i]],
                                    output: ws.attn + i * qDim, tokens: [tokens[i]])
                applyHeadMask(masks[i], layer: l, phase: .decode, rows: 1, output: ws.attn + i * qDim)
            }
            tiles(ws.attn, rows, w.wo, w.bo, ws.x, accumulate: true)
            w.postNorm.withUnsafeBufferPointer { Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h) }
            tiles(ws.h, rows, w.wGate, w.bGate, ws.gate)
            tiles(ws.h, rows, w.wUp, w.bUp, ws.up)
            for r in 0..<rows { Ops.swiGLU(gate: ws.gate + r * I, up: ws.up + r * I, count: I) }   // per row, as a single row runs
            tiles(ws.gate, rows, w.wDown, w.bDown, ws.x, accumulate: true)
            checkRows(ws.x, width: D, layer: l)                             // x [n, D] after layer l
        }
        for cache in caches { cache.endStep(phase: .decode) }
        guard request != .none else { return nonFinite.map { ([], $0) } }
        weights.finalNorm.withUnsafeBufferPointer {
            Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h)
        }
        if request == .hidden {
            checkRows(ws.h, width: D, layer: nil)
            return (0..<n).map { (Array(UnsafeBufferPointer(start: ws.h + $0 * D, count: D)), nonFinite[$0]) }
        }
        var out = [Float](repeating: 0, count: rows * V)                    // [rows, V]
        out.withUnsafeMutableBufferPointer { o in
            WeightMatrix.productsShared(weights.lmHead ?? weights.embedding, x: ws.h, vectors: rows, into: o.baseAddress!)
        }
        out.withUnsafeBufferPointer { checkRows($0.baseAddress!, width: V, layer: nil) }
        return (0..<n).map { (Array(out[($0 * V)..<(($0 + 1) * V)]), nonFinite[$0]) }
    }

    /// y [rows, out] (=|+=) x [rows, in] W^T + b, each row as a single row computes it.
    private func tiles(_ x: UnsafePointer<Float>, _ rows: Int, _ w: WeightMatrix, _ b: [Float]?,
                       _ y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        WeightMatrix.productsShared(w, x: x, vectors: rows, into: y, accumulate: accumulate)
        if let b { b.withUnsafeBufferPointer { Ops.addBias($0.baseAddress!, to: y, rows: rows, cols: w.rows) } }
    }
}
