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
        public let queries: [Float]          // [rows, H * d]   post-RoPE, as the model computed them
        public let keys: [Float]             // [rows, Hkv * d] post-RoPE
        public let values: [Float]           // [rows, Hkv * d]
    }
    /// The model geometry the calls were made with.
    public let modelShape: CacheShape
    /// Tokens the recording cache had seen before the prefill (a replay must start from the same count).
    public let startTokens: Int
    /// The calls in the order the model made them (chunk-major, then layer).
    public let calls: [Call]

    init(modelShape: CacheShape, startTokens: Int, calls: [Call]) {
        self.modelShape = modelShape; self.startTokens = startTokens; self.calls = calls
    }

    /// Tokens the recorded prefill fed (rows of layer 0's calls).
    public var tokens: Int { calls.lazy.filter { $0.layer == 0 }.reduce(0) { $0 + $1.rows } }

    /// Bytes the recording holds (queries, keys and values of every layer: about 2.5x the full
    /// cache of the same tokens for a GQA model with g = 3).
    public var bytes: Int {
        calls.reduce(0) { $0 + ($1.queries.count + $1.keys.count + $1.values.count) * MemoryLayout<Float>.stride + $1.positions.count * 8 }
    }
}

/// Collects the calls of one prefill (set as `KVCache.recorder` for the duration of one forward).
public final class PrefillRecorder {
    private var calls: [PrefillRecording.Call] = []
    private var shape: CacheShape?
    private let startTokens: Int

    /// `startTokens`: `cache.stats.tokensSeen` when the recorded prefill starts.
    public init(startTokens: Int) { self.startTokens = startTokens }

    func record(layer: Int, rows: Int, isStepEnd: Bool, pendingRows: Int, queries: UnsafePointer<Float>,
                keys: UnsafePointer<Float>, values: UnsafePointer<Float>, positions: [Int], modelShape: CacheShape) {
        shape = modelShape
        let qw = modelShape.queryHeads * modelShape.headDim, kw = modelShape.kvHeads * modelShape.headDim
        calls.append(.init(layer: layer, rows: rows, isStepEnd: isStepEnd, pendingRows: pendingRows, positions: positions,
                           queries: Array(UnsafeBufferPointer(start: queries, count: rows * qw)),
                           keys: Array(UnsafeBufferPointer(start: keys, count: rows * kw)),
                           values: Array(UnsafeBufferPointer(start: values, count: rows * kw))))
    }

    /// The recording so far (the calls of the prefill that ran while this recorder was set).
    public func finish() -> PrefillRecording {
        PrefillRecording(modelShape: shape ?? CacheShape(layers: 0, queryHeads: 1, kvHeads: 1, headDim: 0),
                         startTokens: startTokens, calls: calls)
    }
}

extension KVCache {
    /// Why this cache's policy cannot take a replayed dense prefill (nil: it can): it shares a
    /// store across layers, pools KV heads, stores keys in another basis, or selects keys per
    /// query row in prefill; each of those changes what prefill attention computes, so the
    /// recorded inputs of later layers would not be the ones the policy's own prefill produces.
    public var replayablePrefillProblem: String? {
        if shape.kvHeads != modelShape.kvHeads { return "\(policy.name) pools KV heads" }
        for l in 0..<shape.layers {
            if policy.sourceLayer(l) != l { return "\(policy.name): layer \(l) reads layer \(policy.sourceLayer(l))'s store" }
            for h in 0..<shape.kvHeads where policy.keyBasis(layer: l, head: h) != nil {
                return "\(policy.name) stores keys in a rotated basis (layer \(l), KV head \(h))"
            }
        }
        if policy.selectsRows(.prefill) { return "\(policy.name) selects keys per query row in prefill" }
        return nil
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
        precondition(stats.tokensSeen == recording.startTokens,
                     "replayed prefill: recorded after \(recording.startTokens) tokens, the cache has seen \(stats.tokensSeen)")
        let width = modelShape.queryHeads * modelShape.headDim
        let rows = recording.calls.map(\.rows).max() ?? 0
        let output = UnsafeMutablePointer<Float>.allocate(capacity: max(rows * width, 1))   // [rows, H * d], not written
        defer { output.deallocate(); replaying = false }
        replaying = true
        for call in recording.calls {
            pendingRows = call.pendingRows
            call.queries.withUnsafeBufferPointer { q in
                call.keys.withUnsafeBufferPointer { k in
                    call.values.withUnsafeBufferPointer { v in
                        attention(layer: call.layer, phase: .prefill, rows: call.rows, isStepEnd: call.isStepEnd,
                                  queries: q.baseAddress!, keys: k.baseAddress!, values: v.baseAddress!,
                                  positions: call.positions, output: output)
                    }
                }
            }
        }
        pendingRows = 0
        replaying = false
        endStep(phase: .prefill)
    }
}
