import Foundation
import KVTensor
import KVCacheCore

/// Which logits a forward pass returns; `.hidden` returns the final normed hidden states
/// [rows, D] of every row instead (what the LM head reads; e.g. KVSharer's calibration).
public enum LogitsRequest: Sendable { case none, last, all, hidden }

/// A Llama-family decoder (RMSNorm, RoPE, GQA/MQA, SwiGLU MLP, optional biases, tied
/// embeddings). Its matrices stay in their file's precision (`WeightMatrix`): a decode step runs
/// the matrix-vector kernels that decode blocks in registers, across `WorkerPool.shared`; a
/// prefill chunk multiplies dequantized tiles with sgemm (Float32 matrices: sgemm directly).
/// Attention goes through a `KVCache`, which stores what it chooses and measures its own bytes.
public final class LlamaModel {
    public let config: ModelConfig
    public let weights: ModelWeights
    public let rope: RotaryEmbedding
    /// Rows per prefill chunk: activations are O(chunk), attention memory O(chunk x key block).
    public var prefillChunk = 512
    /// The precision of the caches `makeCache` builds (`kv_dtype`; Float32 by default).
    public var kvDType: KVDType = .f32
    /// Query heads switched off inside attention (head ablation, HeadMask.swift); nil = none.
    public var headMask: HeadMask?

    public init(config: ModelConfig, weights: ModelWeights) {
        self.config = config
        self.weights = weights
        rope = config.rotary
    }

    /// Loads a Hugging Face checkpoint folder (F16/BF16 matrices kept 16-bit unless `weights` is .f32).
    public convenience init(checkpoint directory: String, weights precision: WeightPrecision = .stored) throws {
        let ckpt = try Checkpoint(directory: directory)
        self.init(config: ckpt.config, weights: try ckpt.loadWeights(precision))
    }

    /// Bytes of the buffers one forward chunk of `rows` rows allocates (activations, and the tile
    /// that packed matrices are dequantized into for prefill), not counting attention scratch.
    public func workspaceBytes(rows T: Int) -> Int {
        let c = config
        let floats = T * (2 * c.hiddenSize + 2 * c.heads * c.headDim + 2 * c.kvHeads * c.headDim + 2 * c.intermediateSize)
        return 4 * (floats + (T >= WeightMatrix.tileMinRows ? tileFloats : 0))
    }

    /// Floats of the largest prefill tile any matrix needs.
    var tileFloats: Int { weights.matrices.map(\.tileFloats).max() ?? 0 }

    public var cacheShape: CacheShape {
        CacheShape(layers: config.layers, queryHeads: config.heads, kvHeads: config.kvHeads, headDim: config.headDim)
    }

    /// A fresh, empty cache for this model, managed by `policy` (default: the full cache), its float
    /// rows in `kvDType` (default: the model's `kvDType`).
    public func makeCache(policy: CachePolicy = FullCachePolicy(), initialCapacity: Int = 64, kvDType: KVDType? = nil) -> KVCache {
        let cache = KVCache(shape: cacheShape, policy: policy, initialCapacity: initialCapacity, kvDType: kvDType ?? self.kvDType)
        cache.rotary = rope
        return cache
    }

    /// Runs `tokens` at positions startPosition..., appending them to `cache`.
    /// Returns logits [rows, V] for the requested rows (row-major), or [] for `.none`.
    /// No finiteness checks: see `forwardChecked`.
    public func forward(_ tokens: [Int], startPosition: Int, cache: KVCache, phase: Phase,
                        logits request: LogitsRequest = .last) -> [Float] {
        run(tokens, startPosition: startPosition, cache: cache, phase: phase, logits: request, check: false, mask: headMask).logits
    }

    /// `forward`, and throws `NonFiniteError` when a hidden state after a layer, or a returned
    /// logits row, holds a NaN or ±infinity (naming the first layer and position where it
    /// appeared). The cache has taken the tokens either way. Evaluation and generation use this
    /// one; its cost on the decoder benchmark is in docs/robustness.md. `headMask`: this call's head
    /// mask (a sweep's runs each carry their own); nil = the model's `headMask`.
    public func forwardChecked(_ tokens: [Int], startPosition: Int, cache: KVCache, phase: Phase,
                               logits request: LogitsRequest = .last, headMask callMask: HeadMask? = nil) throws -> [Float] {
        let r = run(tokens, startPosition: startPosition, cache: cache, phase: phase, logits: request, check: true,
                    mask: callMask ?? headMask)
        if let e = r.nonFinite { throw e }
        return r.logits
    }

    private func run(_ tokens: [Int], startPosition: Int, cache: KVCache, phase: Phase,
                     logits request: LogitsRequest, check: Bool, mask: HeadMask?) -> (logits: [Float], nonFinite: NonFiniteError?) {
        precondition(tokens.allSatisfy { $0 >= 0 && $0 < config.vocabSize }, "token id out of vocabulary")
        var result: [Float] = []
        var nonFinite: NonFiniteError?
        var start = 0, chunk = 0
        while start < tokens.count {
            let end = min(start + (phase == .decode ? 1 : prefillChunk), tokens.count)
            let isLast = end == tokens.count
            let want: LogitsRequest = request == .all || request == .hidden ? request : (request == .last && isLast ? .last : .none)
            cache.pendingRows = tokens.count - end        // the key length this forward ends with (Loki's k)
            // A resumed prefill (KVCache+Replay.swift): the lower layers' calls are replayed, the
            // model runs from the first layer that differs, on the recorded hidden state.
            let resume = phase == .prefill ? cache.replayPrefix(chunk: chunk, rows: end - start) : nil
            chunk += 1
            let out = forwardChunk(Array(tokens[start..<end]), startPosition: startPosition + start,
                                   cache: cache, phase: phase, isStepEnd: isLast, logits: want, resume: resume, mask: mask,
                                   check: check && nonFinite == nil ? { nonFinite = $0 } : nil)
            result += out
            start = end
        }
        cache.pendingRows = 0
        cache.endStep(phase: phase)
        return (result, nonFinite)
    }

    /// The first non-finite value among rows x [T, D]: (row, value), or nil.
    @inline(__always)
    private func firstNonFiniteRow(_ x: UnsafePointer<Float>, rows: Int, dim: Int) -> (row: Int, value: Float)? {
        guard let i = Ops.firstNonFinite(x, count: rows * dim) else { return nil }
        return (i / dim, x[i])
    }

    private func forwardChunk(_ tokens: [Int], startPosition: Int, cache: KVCache, phase: Phase,
                              isStepEnd: Bool, logits request: LogitsRequest,
                              resume: (layer: Int, hidden: [Float])? = nil, mask: HeadMask?,
                              check: ((NonFiniteError) -> Void)?) -> [Float] {
        var report = check
        let c = config, T = tokens.count, D = c.hiddenSize, d = c.headDim
        let qDim = c.heads * d, kvDim = c.kvHeads * d, I = c.intermediateSize
        let positions = (0..<T).map { startPosition + $0 }
        let ws = Workspace(rows: T, hidden: D, qDim: qDim, kvDim: kvDim, intermediate: I,
                           tile: T >= WeightMatrix.tileMinRows ? tileFloats : 0)
        defer { ws.free() }
        // x [T, D] = embedding rows
        if let resume {
            ws.x.update(from: resume.hidden, count: T * D)                      // x [T, D] entering layer resume.layer
        } else {
            for (r, t) in tokens.enumerated() { weights.embedding.dequantizeRows(t..<(t + 1), into: ws.x + r * D) }
        }
        for (l, w) in weights.layers.enumerated() where l >= resume?.layer ?? 0 {
            if let rec = cache.recorder, rec.hiddenLayers.contains(l) { rec.recordHidden(layer: l, ws.x, count: T * D) }
            w.inputNorm.withUnsafeBufferPointer { Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: T, dim: D, eps: c.rmsNormEps, into: ws.h) }
            if T == 1 {
                // One parallel loop for the three projections of the same x.
                WeightMatrix.products([MatVec(w.wq, ws.q), MatVec(w.wk, ws.k), MatVec(w.wv, ws.v)], x: ws.h)
                addBias(w.bq, ws.q, 1, qDim); addBias(w.bk, ws.k, 1, kvDim); addBias(w.bv, ws.v, 1, kvDim)
            } else {
                linear(ws.h, T, w.wq, w.bq, ws.q, ws.tile)
                linear(ws.h, T, w.wk, w.bk, ws.k, ws.tile)
                linear(ws.h, T, w.wv, w.bv, ws.v, ws.tile)
            }
            rope.apply(ws.q, rows: T, heads: c.heads, positions: positions)
            rope.apply(ws.k, rows: T, heads: c.kvHeads, positions: positions)
            applyHeadMask(mask, layer: l, phase: phase, rows: T, queries: ws.q)
            cache.attention(layer: l, phase: phase, rows: T, isStepEnd: isStepEnd, queries: ws.q, keys: ws.k, values: ws.v,
                            positions: positions, output: ws.attn, tokens: tokens)
            applyHeadMask(mask, layer: l, phase: phase, rows: T, output: ws.attn)
            linear(ws.attn, T, w.wo, w.bo, ws.x, ws.tile, accumulate: true)
            w.postNorm.withUnsafeBufferPointer { Ops.rmsNorm(ws.x, weight: $0.baseAddress!, rows: T, dim: D, eps: c.rmsNormEps, into: ws.h) }
            if T == 1 {
                WeightMatrix.products([MatVec(w.wGate, ws.gate), MatVec(w.wUp, ws.up)], x: ws.h)
                addBias(w.bGate, ws.gate, 1, I); addBias(w.bUp, ws.up, 1, I)
            } else {
                linear(ws.h, T, w.wGate, w.bGate, ws.gate, ws.tile)
                linear(ws.h, T, w.wUp, w.bUp, ws.up, ws.tile)
            }
            Ops.swiGLU(gate: ws.gate, up: ws.up, count: T * I)
            linear(ws.gate, T, w.wDown, w.bDown, ws.x, ws.tile, accumulate: true)
            // x [T, D]: the residual stream after layer l (T x D floats: ~0.1% of the layer's reads).
            if let r = report, let bad = firstNonFiniteRow(ws.x, rows: T, dim: D) {
                r(NonFiniteError(layer: l, position: startPosition + bad.row, value: bad.value))
                report = nil
            }
        }
        guard request != .none else { return [] }
        let first = request == .last ? T - 1 : 0, rows = T - first
        weights.finalNorm.withUnsafeBufferPointer {
            Ops.rmsNorm(ws.x + first * D, weight: $0.baseAddress!, rows: rows, dim: D, eps: c.rmsNormEps, into: ws.h)
        }
        if request == .hidden {
            if let r = report, let bad = firstNonFiniteRow(ws.h, rows: rows, dim: D) {
                r(NonFiniteError(layer: nil, position: startPosition + first + bad.row, value: bad.value))
            }
            return Array(UnsafeBufferPointer(start: ws.h, count: rows * D))
        }
        let head = weights.lmHead ?? weights.embedding
        return [Float](unsafeUninitializedCapacity: rows * c.vocabSize) { o, n in
            head.apply(ws.h, rows: rows, into: o.baseAddress!, tile: ws.tile)   // logits [rows, V]
            n = rows * c.vocabSize
            if let r = report, let bad = firstNonFiniteRow(o.baseAddress!, rows: rows, dim: c.vocabSize) {
                r(NonFiniteError(layer: nil, position: startPosition + first + bad.row, value: bad.value))
            }
        }
    }

    /// y [rows, out] (=|+=) x [rows, in] W^T + b
    @inline(__always)
    private func linear(_ x: UnsafePointer<Float>, _ rows: Int, _ w: WeightMatrix, _ b: [Float]?,
                        _ y: UnsafeMutablePointer<Float>, _ tile: UnsafeMutablePointer<Float>?, accumulate: Bool = false) {
        w.apply(x, rows: rows, into: y, accumulate: accumulate, tile: tile)
        addBias(b, y, rows, w.rows)
    }

    @inline(__always)
    private func addBias(_ b: [Float]?, _ y: UnsafeMutablePointer<Float>, _ rows: Int, _ cols: Int) {
        if let b { b.withUnsafeBufferPointer { Ops.addBias($0.baseAddress!, to: y, rows: rows, cols: cols) } }
    }
}

/// Activation buffers of one forward chunk.
struct Workspace {
    let x, h, q, k, v, attn, gate, up: UnsafeMutablePointer<Float>
    /// A dequantized tile of a packed matrix (prefill; nil when no matrix needs one).
    let tile: UnsafeMutablePointer<Float>?
    init(rows T: Int, hidden D: Int, qDim: Int, kvDim: Int, intermediate I: Int, tile tileFloats: Int) {
        x = .allocate(capacity: T * D); h = .allocate(capacity: T * D)            // [T, D]
        q = .allocate(capacity: T * qDim); attn = .allocate(capacity: T * qDim)   // [T, H*d]
        k = .allocate(capacity: T * kvDim); v = .allocate(capacity: T * kvDim)    // [T, Hkv*d]
        gate = .allocate(capacity: T * I); up = .allocate(capacity: T * I)        // [T, I]
        tile = tileFloats > 0 ? .allocate(capacity: tileFloats) : nil             // [tile rows, in]
    }
    func free() {
        for p in [x, h, q, k, v, attn, gate, up] { p.deallocate() }
        tile?.deallocate()
    }
}
