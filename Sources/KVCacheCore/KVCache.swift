import Foundation
import KVTensor

/// The KV cache the decoder talks to. It stores post-RoPE keys and values per layer and
/// KV head, runs attention over what it holds, lets a `CachePolicy` decide what is shared,
/// read and kept, and measures its own bytes.
///
/// The model hands each layer's new queries/keys/values to `attention(...)`; the cache
/// appends, selects, attends, observes and retains. The model never knows which policy
/// runs, and policies never see the model.
public final class KVCache {
    /// The geometry the cache stores and policies bind to (fewer KV heads under head pooling).
    public let shape: CacheShape
    /// The model's geometry: what `attention` receives.
    public let modelShape: CacheShape
    public let policy: CachePolicy
    /// How the policy's tokens are stored (`policy.layout`, read once).
    public let layout: StorageLayout
    /// stores[layer][kvHead]; a layer that reads another layer's store (sharing) holds nothing.
    public private(set) var stores: [[HeadStore]]
    public private(set) var stats = CacheStats()
    /// Threads used for per-head decode attention.
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// When false, new tokens are stored but no policy evicts (e.g. while a task's question is fed).
    public var compressionEnabled = true
    /// Optional instrumentation (not owned).
    public weak var probe: AttentionProbe?
    /// Optional timing of the decode step's choose and attend halves (benchmarks; nil: not timed).
    public var phaseClock: DecodePhaseClock?
    /// Tokens seen when the last compressed prefill ended (the prompt length ratio budgets refer to).
    public private(set) var promptLength = 0
    /// Tokens seen when the last prefill ended, compressed or not (a question prefilled without
    /// compression after the context moves it past `promptLength`).
    public private(set) var prefillEnd = 0
    /// Payload bytes per layer's own stores, and their sum, kept current between step ends so that
    /// `stats.peakBytesStored` is the true high-water mark (after each append, before retention).
    private var layerPayload: [Int] = []
    private var livePayload = 0

    var meter = ReadMeter()
    /// Rows of the current forward call after the chunk being attended (set by the model; see `LayerStep.pendingRows`).
    public var pendingRows = 0
    /// The precision of the stores' float rows (`kv_dtype`): keys and values are rounded to it on append.
    public let kvDType: KVDType
    /// The layout's work around each layer step (pooling, key basis, codes, position shift, merging).
    let steps: LayoutSteps
    var scratch: [UnsafeMutablePointer<Float>] = []           // per KV head: probabilities [g, n]
    private var scratchCapacity = 0
    private var recent: [[Float]]                             // per layer: last queryWindow query rows [W, H*d]
    /// The model's rotary embedding (set by the model): lets the cache re-rotate stored keys when
    /// the layout shifts positions.
    public var rotary: RotaryEmbedding?
    /// Shared prefill (KVCache+Replay.swift): records each prefill call's inputs when set; while
    /// `replaying`, prefill attention is metered but its output not computed.
    public var recorder: PrefillRecorder?
    /// A prefill to resume from a recording (the model replays the layers below `layer`).
    public var resume: PrefillResume?
    var replaying = false

    public init(shape modelShape: CacheShape, policy: CachePolicy = FullCachePolicy(), initialCapacity: Int = 64,
                kvDType: KVDType = .f32) {
        let layout = policy.layout
        let stored = layout.kvHeads(model: modelShape.kvHeads)
        precondition(stored >= 1 && modelShape.kvHeads % stored == 0, "\(policy.name): stored KV heads must divide the model's")
        let shape = CacheShape(layers: modelShape.layers, queryHeads: modelShape.queryHeads, kvHeads: stored,
                               headDim: modelShape.headDim)
        self.shape = shape
        self.modelShape = modelShape
        self.policy = policy
        self.layout = layout
        self.kvDType = kvDType
        policy.bind(shape: shape)
        stores = layout.makeStores(shape: shape, owns: { policy.sourceLayer($0) == $0 }, initialCapacity: initialCapacity, dtype: kvDType)
        steps = LayoutSteps(layout: layout, shape: shape, modelKVHeads: modelShape.kvHeads)
        recent = Array(repeating: [], count: shape.layers)
        layerPayload = Array(repeating: 0, count: shape.layers)
    }

    deinit { scratch.forEach { $0.deallocate() } }

    /// Number of tokens layer `layer`, KV head `head` holds.
    public func count(layer: Int, head: Int = 0) -> Int { stores[policy.sourceLayer(layer)][head].count }

    /// Appends `rows` new tokens to `layer` and computes their attention output.
    /// - queries:   [rows, H * d]   post-RoPE
    /// - keys:      [rows, Hkv * d] post-RoPE
    /// - values:    [rows, Hkv * d]
    /// - positions: [rows]          absolute positions of the new tokens
    /// - isStepEnd: last chunk of a prefill, or a decode step (retention runs then)
    /// - output:    [rows, H * d]
    /// - tokens:    [rows]          token ids of the new tokens (nil: not known); policies see them in `LayerStep.tokens`
    public func attention(layer: Int, phase: Phase, rows: Int, isStepEnd: Bool = true,
                          queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                          positions: [Int], output: UnsafeMutablePointer<Float>, tokens: [Int]? = nil) {
        precondition(tokens.map { $0.count == rows } ?? true, "attention: one token id per row")
        let hkv = shape.kvHeads
        if phase == .prefill, let rec = recorder {
            rec.record(layer: layer, rows: rows, isStepEnd: isStepEnd, pendingRows: pendingRows, queries: queries,
                       keys: keys, values: values, positions: positions, tokens: tokens, modelShape: modelShape, kvDType: kvDType)
        }
        let source = policy.sourceLayer(layer)
        let owns = source == layer
        let heads = stores[source]
        if owns {
            // The new tokens as the layout stores them (pooled heads, keys in their basis).
            steps.input(layer: source, rows: rows, keys: keys, values: values) { keys, values in
                let d = shape.headDim
                for h in 0..<hkv {
                    let st = heads[h]
                    st.reserve(st.count + rows)
                    for r in 0..<rows {
                        st.append(key: keys + (r * hkv + h) * d, value: values + (r * hkv + h) * d, position: positions[r])
                    }
                }
            }
            // High-water mark: every store holds its new tokens and nothing is evicted yet.
            remeasure(source)
            stats.peakBytesStored = max(stats.peakBytesStored, livePayload)
        }
        if layer == 0 { stats.tokensSeen += rows }
        // Queries in the stores' key bases (q.k unchanged for an orthonormal basis).
        steps.queries(layer: source, rows: rows, queries) { queries in
            rememberQueries(layer: layer, queries: queries, rows: rows)
            recent[layer].withUnsafeBufferPointer { recentBuf in
                var step = LayerStep(layer: layer, phase: phase, isStepEnd: isStepEnd, compress: compressionEnabled,
                                     rows: rows, queries: queries, positions: positions,
                                     recentQueries: recentBuf.baseAddress ?? queries, recentCount: recentBuf.count / (shape.queryHeads * shape.headDim),
                                     stores: heads, shape: shape, tokensSeen: stats.tokensSeen, promptLength: promptLength,
                                     pendingRows: phase == .decode ? 0 : pendingRows, prefillEnd: prefillEnd, meter: meter)
                step.tokens = tokens
                if owns { policy.didAppend(step) }
                attend(step, owns: owns, output: output)
                if !replaying {
                    steps.output(layer: layer, rows: rows, output)
                    probe?.attentionOutput(layer: layer, phase: phase, rows: rows, output: output)
                }
                if owns && isStepEnd { finish(step, next: (positions.max() ?? -1) + 1) }
            }
        }
    }

    /// Attention of the step's rows over the stores: decode (one row) through the policy's selection,
    /// prefill exact and causal, or over the keys each row selects when the policy selects rows.
    private func attend(_ step: LayerStep, owns: Bool, output: UnsafeMutablePointer<Float>) {
        let scale = step.scale
        if step.phase == .decode && step.rows == 1 { return decodeAttention(step, scale: scale, output: output) }
        if owns { restoreOrder(layer: step.layer) }
        // Over merged tokens the store's positions are not increasing, but every old token
        // precedes the new ones, so the visible counts are still prefixes.
        if policy.selectsRows(.prefill) { return selectedPrefill(step, scale: scale, output: output) }
        let d = shape.headDim, g = shape.groupSize, hq = shape.queryHeads
        for (h, st) in step.stores.enumerated() {
            let visible = Attention.visibleCounts(store: st, positions: step.positions)
            meterPrefill(rowsRead: visible.reduce(0, +))
            if replaying { continue }           // the recorded dense prefill computed this output
            for qh in h * g..<(h + 1) * g {
                Attention.causal(q: step.queries + qh * d, ldq: hq * d, rows: step.rows, store: st, visible: visible,
                                 scale: scale, out: output + qh * d, ldo: hq * d)
            }
        }
    }

    /// A step end of a layer that owns its stores: the policy's retention (when compressing), the
    /// layout's step end, and the stores' new payload.
    private func finish(_ step: LayerStep, next: Int) {
        let layer = step.layer
        if compressionEnabled {
            for h in 0..<shape.kvHeads {
                guard let keep = policy.retain(step, head: h) else { continue }
                apply(keep: keep, layer: layer, head: h)
            }
        }
        let other = steps.stepEnd(layer: layer, stores: stores, next: next, rotary: rotary, compress: compressionEnabled) {
            policy.didRetain(layer: $0, head: $1, kept: $2)
        }
        remeasure(layer)
        if let other { remeasure(other) }
    }

    /// Updates the running payload total after layer `l`'s stores changed.
    private func remeasure(_ l: Int) {
        let bytes = stores[l].reduce(0) { $0 + $1.payloadBytes }
        livePayload += bytes - layerPayload[l]
        layerPayload[l] = bytes
    }

    /// Applies a retention (increasing store indices). Dropping a single token is O(d) where the
    /// format allows (the last token moves into its slot); larger evictions compact in order.
    private func apply(keep: [Int], layer: Int, head: Int) {
        let store = stores[layer][head]
        precondition(keep.count <= store.count, "\(policy.name): retained more tokens than stored")
        guard keep.count < store.count else { return }
        if keep.count == store.count - 1 {
            var dropped = keep.count            // the one index missing from `keep`
            for (i, k) in keep.enumerated() where k != i { dropped = i; break }
            policy.didRetain(layer: layer, head: head, kept: store.remove(at: dropped))
        } else {
            store.retain(keep)
            policy.didRetain(layer: layer, head: head, kept: keep)
        }
    }

    /// Causal prefill masking needs increasing positions: undo decode-time slot reuse.
    private func restoreOrder(layer: Int) {
        for (h, store) in stores[layer].enumerated() where !store.isOrdered {
            policy.didRetain(layer: layer, head: h, kept: store.restoreOrder())
        }
    }

    /// Keeps the last `policy.queryWindow` query rows of each layer, across prefill chunks.
    private func rememberQueries(layer: Int, queries: UnsafePointer<Float>, rows: Int) {
        let w = policy.queryWindow
        guard w > 0 else { return }
        let width = shape.queryHeads * shape.headDim
        recent[layer].append(contentsOf: UnsafeBufferPointer(start: queries, count: rows * width))
        let excess = recent[layer].count / width - w
        if excess > 0 { recent[layer].removeFirst(excess * width) }
    }

    /// Closes a forward step (all layers): updates the measured figures.
    public func endStep(phase: Phase) {
        var stored = 0, meta = policy.metadataBytes, alloc = 0
        for (l, layer) in stores.enumerated() {
            var own = 0
            for s in layer { own += s.payloadBytes; meta += s.metadataBytes; alloc += s.allocatedBytes }
            layerPayload[l] = own
            stored += own
        }
        livePayload = stored
        stats.bytesStored = stored
        stats.metadataBytes = meta
        stats.bytesAllocated = alloc
        stats.peakBytesStored = max(stats.peakBytesStored, stored)
        if phase == .decode {
            stats.lastStepBytesRead = meter.total
            stats.decodeBytesRead += meter.total
            stats.decodeKeyBytesRead += meter.keyBytes
            stats.decodeValueBytesRead += meter.valueBytes
            stats.decodeMetadataBytesRead += meter.metadataBytes
            stats.decodeSteps += 1
        } else {
            stats.prefillBytesRead += meter.total
            if compressionEnabled { promptLength = stats.tokensSeen }
            prefillEnd = stats.tokensSeen
        }
        meter = ReadMeter()
    }

    /// Drops every token and resets the figures and the policy.
    public func reset() {
        for layer in stores { for s in layer { s.removeAll() } }
        recent = Array(repeating: [], count: shape.layers)
        stats = CacheStats()
        promptLength = 0
        prefillEnd = 0
        layerPayload = layerPayload.map { _ in 0 }
        livePayload = 0
        steps.reset()
        policy.reset()
    }

    func ensureScratch(_ n: Int) {
        if scratch.count == shape.kvHeads && n <= scratchCapacity { return }
        scratch.forEach { $0.deallocate() }
        scratchCapacity = max(n, scratchCapacity * 2, 1024)
        scratch = (0..<shape.kvHeads).map { _ in .allocate(capacity: scratchCapacity) }
    }
}
