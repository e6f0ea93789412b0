import Foundation

/// Prefill once, compress many (issue 15): the inputs every layer's prefill handed to
/// `KVCache.attention` during one dense prefill, so that the same prefill can be *replayed* into
/// caches managed by other policies without running the model again.
///
/// Why this is exact: a policy that leaves prefill attention dense (it stores every appended
/// token as given, every layer owns its store, keys in the model's basis, no per-row selection,
/// and it evicts, quantizes or merges only at the step end of each layer, after that layer
/// attended) sees a prefill whose queries, keys, values and positions do not depend on the
/// policy: later layers are computed with the full cache (kvpress semantics). Replaying the
/// recorded calls in their order (append, `didAppend` with the same queries and store state,
/// prefill read metering, retention / quantization / merging at the step end) leaves the cache and
/// the policy in the state the policy's own prefill would have left them, bit for bit; only the
/// attention output, which nothing downstream of the cache reads during replay, is not recomputed.
/// Which policies qualify is declared per policy (`PolicySpec.sharesDensePrefill`) and checked at
/// replay (`replayablePrefillProblem`).
public final class PrefillRecording: @unchecked Sendable {
    /// One `attention` call of the recorded prefill.
    public struct Call {
        public let layer: Int
        public let rows: Int
        public let isStepEnd: Bool
        public let pendingRows: Int
        public let positions: [Int]          // [rows]
        public let tokens: [Int]?            // [rows] token ids, when the model passed them
        public let queries: [Float]          // [rows, H * d]   post-RoPE, as the model computed them
        public let keys: [Float]             // [rows, Hkv * d] post-RoPE
        public let values: [Float]           // [rows, Hkv * d]
    }
    /// The model geometry the calls were made with.
    public let modelShape: CacheShape
    /// The precision of the recording cache's rows: what later layers' inputs were computed over, so
    /// a replay is exact only into a cache of the same `kvDType`.
    public let kvDType: KVDType
    /// Tokens the recording cache had seen before the prefill (a replay must start from the same count).
    public let startTokens: Int
    /// The calls in the order the model made them (chunk-major, then layer).
    public let calls: [Call]
    /// Hidden states [rows, D] entering each recorded layer, per chunk (`PrefillRecorder.hiddenLayers`).
    public let hidden: [Int: [[Float]]]

    init(modelShape: CacheShape, kvDType: KVDType, startTokens: Int, calls: [Call], hidden: [Int: [[Float]]]) {
        self.modelShape = modelShape; self.kvDType = kvDType; self.startTokens = startTokens; self.calls = calls; self.hidden = hidden
    }

    /// Tokens the recorded prefill fed (rows of layer 0's calls).
    public var tokens: Int { calls.lazy.filter { $0.layer == 0 }.reduce(0) { $0 + $1.rows } }

    /// Bytes the recording holds (queries, keys and values of every layer: about 2.5x the full
    /// cache of the same tokens for a GQA model with g = 3).
    public var bytes: Int {
        calls.reduce(0) { $0 + ($1.queries.count + $1.keys.count + $1.values.count) * MemoryLayout<Float>.stride + $1.positions.count * 8 }
            + hidden.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count * MemoryLayout<Float>.stride } }
    }
}

/// Resume a prefill from a recording: replay the layers below `layer`, run the model from `layer`
/// on the recorded hidden state (a policy whose lower layers prefill densely: CLA and KVSharer
/// maps share nothing below the first layer that reads another's store).
public struct PrefillResume {
    public let recording: PrefillRecording
    public let layer: Int
    public init(recording: PrefillRecording, layer: Int) {
        precondition(recording.hidden[layer] != nil, "resumed prefill: no hidden state recorded at layer \(layer)")
        self.recording = recording; self.layer = layer
    }
}

/// Collects the calls of one prefill (set as `KVCache.recorder` for the duration of one forward).
public final class PrefillRecorder {
    private var calls: [PrefillRecording.Call] = []
    private var shape: CacheShape?
    private var kvDType: KVDType = .f32
    private let startTokens: Int
    /// Layers whose entering hidden state the model records (for resumed prefills).
    public let hiddenLayers: Set<Int>
    private var hidden: [Int: [[Float]]] = [:]

    /// `startTokens`: `cache.stats.tokensSeen` when the recorded prefill starts.
    public init(startTokens: Int, hiddenLayers: Set<Int> = []) { self.startTokens = startTokens; self.hiddenLayers = hiddenLayers }

    /// The model's hidden state x [rows, D] entering `layer` for the current chunk.
    public func recordHidden(layer: Int, _ x: UnsafePointer<Float>, count: Int) {
        hidden[layer, default: []].append(Array(UnsafeBufferPointer(start: x, count: count)))
    }

    func record(layer: Int, rows: Int, isStepEnd: Bool, pendingRows: Int, queries: UnsafePointer<Float>,
                keys: UnsafePointer<Float>, values: UnsafePointer<Float>, positions: [Int], tokens: [Int]?, modelShape: CacheShape,
                kvDType: KVDType) {
        shape = modelShape; self.kvDType = kvDType
        let qw = modelShape.queryHeads * modelShape.headDim, kw = modelShape.kvHeads * modelShape.headDim
        calls.append(.init(layer: layer, rows: rows, isStepEnd: isStepEnd, pendingRows: pendingRows, positions: positions, tokens: tokens,
                           queries: Array(UnsafeBufferPointer(start: queries, count: rows * qw)),
                           keys: Array(UnsafeBufferPointer(start: keys, count: rows * kw)),
                           values: Array(UnsafeBufferPointer(start: values, count: rows * kw))))
    }

    /// The recording so far (the calls of the prefill that ran while this recorder was set).
    public func finish() -> PrefillRecording {
        PrefillRecording(modelShape: shape ?? CacheShape(layers: 0, queryHeads: 1, kvHeads: 1, headDim: 0), kvDType: kvDType,
                         startTokens: startTokens, calls: calls, hidden: hidden)
    }
}

extension KVCache {
    /// Why this cache's policy cannot take a replayed dense prefill (nil: it can): it shares a
    /// store across layers, pools KV heads, stores keys in another basis, or selects keys per
    /// query row in prefill; each of those changes what prefill attention computes, so the
    /// recorded inputs of later layers would not be the ones the policy's own prefill produces.
    public var replayablePrefillProblem: String? {
        if shape.kvHeads != modelShape.kvHeads { return "\(policy.name) pools KV heads" }
        if layout.kvHeadProjection != nil { return "\(policy.name) stores projected KV heads" }
        for l in 0..<shape.layers {
            if policy.sourceLayer(l) != l { return "\(policy.name): layer \(l) reads layer \(policy.sourceLayer(l))'s store" }
            for h in 0..<shape.kvHeads where policy.keyBasis(layer: l, head: h) != nil {
                return "\(policy.name) stores keys in a rotated basis (layer \(l), KV head \(h))"
            }
        }
        if policy.selectsRows(.prefill) { return "\(policy.name) selects keys per query row in prefill" }
        return nil
    }

    /// The leading layers whose prefill is the dense prefill for this policy: those before the first
    /// layer that reads another layer's store or keeps keys in another basis (all layers when none
    /// does; 0 when the policy pools KV heads or selects keys per query row in prefill).
    public var denseLayerPrefix: Int {
        if shape.kvHeads != modelShape.kvHeads || layout.kvHeadProjection != nil || policy.selectsRows(.prefill) { return 0 }
        for l in 0..<shape.layers {
            if policy.sourceLayer(l) != l || (0..<shape.kvHeads).contains(where: { policy.keyBasis(layer: l, head: $0) != nil }) { return l }
        }
        return shape.layers
    }

    /// For a resumed prefill (`resume` set), chunk `chunk` of `rows` tokens: replays the recorded
    /// calls of the layers below `resume.layer` and returns where the model goes on (that layer
    /// and its recorded hidden state [rows, D]); nil when no prefill is resumed.
    public func replayPrefix(chunk: Int, rows: Int) -> (layer: Int, hidden: [Float])? {
        guard let r = resume else { return nil }
        let L = modelShape.layers, rec = r.recording
        precondition(rec.kvDType == kvDType, "resumed prefill: recorded in \(rec.kvDType.rawValue), the cache stores \(kvDType.rawValue)")
        precondition(r.layer <= denseLayerPrefix, "resumed prefill: \(policy.name) does not prefill layers below \(r.layer) densely")
        precondition(stats.tokensSeen == rec.startTokens || chunk > 0, "resumed prefill: recorded after \(rec.startTokens) tokens, the cache has seen \(stats.tokensSeen)")
        precondition((chunk + 1) * L <= rec.calls.count && rec.calls[chunk * L].rows == rows,
                     "resumed prefill: chunk \(chunk) of \(rows) rows is not in the recording")
        replay(rec.calls[(chunk * L)..<(chunk * L + r.layer)])
        return (r.layer, rec.hidden[r.layer]![chunk])
    }

    /// Replays recorded calls (prefill attention metered, not computed).
    private func replay(_ calls: ArraySlice<PrefillRecording.Call>) {
        let width = modelShape.queryHeads * modelShape.headDim
        let output = UnsafeMutablePointer<Float>.allocate(capacity: max((calls.map(\.rows).max() ?? 0) * width, 1))
        defer { output.deallocate(); replaying = false }
        replaying = true
        let pending = pendingRows
        for call in calls {
            pendingRows = call.pendingRows
            call.queries.withUnsafeBufferPointer { q in
                call.keys.withUnsafeBufferPointer { k in
                    call.values.withUnsafeBufferPointer { v in
                        attention(layer: call.layer, phase: .prefill, rows: call.rows, isStepEnd: call.isStepEnd,
                                  queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!,
                                  positions: call.positions, output: output, tokens: call.tokens)
                    }
                }
            }
        }
        pendingRows = pending
    }

    /// Replays a recorded dense prefill into this cache: every recorded `attention` call in its
    /// order, with the recorded pending rows, then the prefill's `endStep`. The stores, the
    /// policy's state and every measured figure (bytes stored, peak, prefill bytes read, tokens
    /// seen, prompt length) end as after `model.forward(tokens, ..., phase: .prefill)` on this
    /// cache; `compressionEnabled` applies as it would there. Attention outputs are not computed
    /// (a probe's `attentionOutput` is not called for the replayed prefill).
    public func replay(_ recording: PrefillRecording) {
        if let problem = replayablePrefillProblem { preconditionFailure("replayed prefill: \(problem)") }
        precondition(recording.modelShape == modelShape, "replayed prefill: recorded for another model shape")
        precondition(recording.kvDType == kvDType,
                     "replayed prefill: recorded in \(recording.kvDType.rawValue), the cache stores \(kvDType.rawValue)")
        precondition(stats.tokensSeen == recording.startTokens,
                     "replayed prefill: recorded after \(recording.startTokens) tokens, the cache has seen \(stats.tokensSeen)")
        replay(recording.calls[...])
        pendingRows = 0
        endStep(phase: .prefill)
    }
}
