import Foundation
import KVTensor
import KVCache

extension LlamaModel {
    /// One decode step of several independent sequences in lockstep: sequence i feeds `tokens[i]`
    /// at `positions[i]` into its own cache `caches[i]` and gets its next-token logits [V].
    ///
    /// The matrix products pass every sequence's row through each block of weight rows while it is
    /// in cache (`BLAS.linearShared`), so the weights stream from memory once per step instead of
    /// once per sequence; attention runs per sequence on its own cache, and each cache's step ends,
    /// exactly as `forward(_:phase: .decode)` does. Every sequence's logits, cache and measured
    /// figures are bit for bit those of decoding it alone with `forward` (BatchDecodeTests).
    public func decodeBatch(_ tokens: [Int], positions: [Int], caches: [KVCache],
                            logits request: LogitsRequest = .last) -> [[Float]] {
        let n = tokens.count
        precondition(positions.count == n && caches.count == n, "decodeBatch: one token, position and cache per sequence")
        precondition(tokens.allSatisfy { $0 >= 0 && $0 < config.vocabSize }, "token id out of vocabulary")
        guard n > 0 else { return [] }
        let c = config, D = c.hiddenSize, d = c.headDim, V = c.vocabSize
        let qDim = c.heads * d, kvDim = c.kvHeads * d, I = c.intermediateSize
        let rows = n
        let ws = Workspace(rows: rows, hidden: D, qDim: qDim, kvDim: kvDim, intermediate: I)
        defer { ws.free() }
        for (p, width) in [(ws.x, D), (ws.h, D), (ws.q, qDim), (ws.attn, qDim), (ws.k, kvDim), (ws.v, kvDim), (ws.gate, I), (ws.up, I)] {
            p.initialize(repeating: 0, count: rows * width)
        }
        weights.embedding.withUnsafeBufferPointer { e in
            for (r, t) in tokens.enumerated() { (ws.x + r * D).update(from: e.baseAddress! + t * D, count: D) }
        }
        let pos = positions
        for (l, w) in weights.layers.enumerated() {
            w.inputNorm.withUnsafeBufferPointer { Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h) }
            tiles(ws.h, rows, D, w.wq, w.bq, qDim, ws.q)
            tiles(ws.h, rows, D, w.wk, w.bk, kvDim, ws.k)
            tiles(ws.h, rows, D, w.wv, w.bv, kvDim, ws.v)
            rope.apply(ws.q, rows: rows, heads: c.heads, positions: pos)
            rope.apply(ws.k, rows: rows, heads: c.kvHeads, positions: pos)
            for i in 0..<n {
                caches[i].pendingRows = 0
                caches[i].attention(layer: l, phase: .decode, rows: 1, isStepEnd: true, queries: ws.q + i * qDim,
                                    keys: ws.k + i * kvDim, values: ws.v + i * kvDim, positions: [positions[i]],
                                    output: ws.attn + i * qDim)
            }
            tiles(ws.attn, rows, qDim, w.wo, w.bo, D, ws.x, accumulate: true)
            w.postNorm.withUnsafeBufferPointer { Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h) }
            tiles(ws.h, rows, D, w.wGate, w.bGate, I, ws.gate)
            tiles(ws.h, rows, D, w.wUp, w.bUp, I, ws.up)
            for r in 0..<rows { Ops.swiGLU(gate: ws.gate + r * I, up: ws.up + r * I, count: I) }   // per row, as a single row runs
            tiles(ws.gate, rows, I, w.wDown, w.bDown, D, ws.x, accumulate: true)
        }
        for cache in caches { cache.endStep(phase: .decode) }
        guard request != .none else { return Array(repeating: [], count: n) }
        weights.finalNorm.withUnsafeBufferPointer {
            Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h)
        }
        if request == .hidden { return (0..<n).map { Array(UnsafeBufferPointer(start: ws.h + $0 * D, count: D)) } }
        var out = [Float](repeating: 0, count: rows * V)                    // [rows, V]
        out.withUnsafeMutableBufferPointer { o in
            (weights.lmHead ?? weights.embedding).withUnsafeBufferPointer {
                BLAS.linearShared(ws.h, rows: rows, inDim: D, weight: $0.baseAddress!, outDim: V, into: o.baseAddress!)
            }
        }
        return (0..<n).map { Array(out[($0 * V)..<(($0 + 1) * V)]) }
    }

    /// y [rows, out] (=|+=) x [rows, in] W^T + b, each row as a single row computes it.
    private func tiles(_ x: UnsafePointer<Float>, _ rows: Int, _ inDim: Int, _ w: [Float], _ b: [Float]?,
                       _ outDim: Int, _ y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        w.withUnsafeBufferPointer { BLAS.linearShared(x, rows: rows, inDim: inDim, weight: $0.baseAddress!, outDim: outDim, into: y, accumulate: accumulate) }
        if let b { b.withUnsafeBufferPointer { Ops.addBias($0.baseAddress!, to: y, rows: rows, cols: outDim) } }
    }
}
