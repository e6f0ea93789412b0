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
    /// stores[layer][kvHead]; a layer that reads another layer's store (sharing) holds nothing.
    public private(set) var stores: [[HeadStore]]
    public private(set) var stats = CacheStats()
    /// Threads used for per-head decode attention.
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    /// When false, new tokens are stored but no policy evicts (e.g. while a task's question is fed).
    public var compressionEnabled = true
    /// Optional instrumentation (not owned).
    public weak var probe: AttentionProbe?
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
    private var bases: [[[Float]?]] = []                     // [layer][kvHead] key basis P [d, d] or nil
    private var rotatedQueries: [Float] = []                 // scratch [rows, H*d]
    private var pooledKeys: [Float] = [], pooledValues: [Float] = []   // scratch [rows, Hkv'*d]
    var scratch: [UnsafeMutablePointer<Float>] = []           // per KV head: probabilities [g, n]
    private var scratchCapacity = 0
    private var recent: [[Float]]                             // per layer: last queryWindow query rows [W, H*d]
    /// The model's rotary embedding (set by the model): lets the cache re-rotate stored keys when
    /// the policy shifts positions.
    public var rotary: RotaryEmbedding?
    /// Position shift: per (layer, KV head), original position -> rotary position of the stored
    /// keys whose rotation differs from their original position (keyed by position, so it survives
    /// every index move).
    private var rotaryShift: [[[Int32: Int32]]]
    /// Position shift: per (layer, KV head), next position - tokens held at the last shift. It grows
    /// exactly when tokens were evicted; while it stays, no stored key needs re-rotating.
    private var rotaryOffset: [[Int]]
    /// MiniCache: for the upper layer of each merged pair, its lower layer and per-KV-head state.
    private var mergePairs: [Int: (lower: Int, states: [PairMergeState])] = [:]
    /// Shared prefill (KVCache+Replay.swift): records each prefill call's inputs when set; while
    /// `replaying`, prefill attention is metered but its output not computed.
    public var recorder: PrefillRecorder?
    /// A prefill to resume from a recording (the model replays the layers below `layer`).
    public var resume: PrefillResume?
    var replaying = false

    public init(shape modelShape: CacheShape, policy: CachePolicy = FullCachePolicy(), initialCapacity: Int = 64) {
        let stored = policy.storedKVHeads(modelKVHeads: modelShape.kvHeads)
        precondition(stored >= 1 && modelShape.kvHeads % stored == 0, "\(policy.name): stored KV heads must divide the model's")
        let shape = CacheShape(layers: modelShape.layers, queryHeads: modelShape.queryHeads, kvHeads: stored,
                               headDim: modelShape.headDim)
        self.shape = shape
        self.modelShape = modelShape
        self.policy = policy
        policy.bind(shape: shape)
        stores = (0..<shape.layers).map { l in
            let owns = policy.sourceLayer(l) == l
            return (0..<shape.kvHeads).map { _ in
                HeadStore(headDim: shape.headDim, initialCapacity: owns ? initialCapacity : 1)
            }
        }
        if let q = policy.quantization { for layer in stores { for s in layer { s.enableQuantization(q) } } }
        if let m = policy.layerMerge {
            precondition(policy.quantization == nil, "\(policy.name): layer merging does not compose with quantization")
            for (a, b) in m.pairs(layers: shape.layers) {
                precondition(policy.sourceLayer(a) == a && policy.sourceLayer(b) == b,
                             "\(policy.name): merged layers \(a) and \(b) must own their stores (no cross-layer sharing)")
                for h in 0..<shape.kvHeads {
                    let shared = MergedDirections(headDim: shape.headDim)
                    stores[a][h].enableMerging(shared); stores[b][h].enableMerging(shared)
                }
                mergePairs[b] = (a, (0..<shape.kvHeads).map { _ in PairMergeState() })
            }
        }
        recent = Array(repeating: [], count: shape.layers)
        rotaryShift = Array(repeating: Array(repeating: [:], count: shape.kvHeads), count: shape.layers)
        rotaryOffset = Array(repeating: Array(repeating: 0, count: shape.kvHeads), count: shape.layers)
        if policy.shiftsPositions {
            precondition(policy.quantization == nil && policy.layerMerge == nil,
                         "\(policy.name): position shift re-rotates Float32 keys; it does not compose with quantization or merging")
        }
        bases = (0..<shape.layers).map { l in (0..<shape.kvHeads).map { policy.keyBasis(layer: l, head: $0) } }
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
    public func attention(layer: Int, phase: Phase, rows: Int, isStepEnd: Bool = true,
                          queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                          positions: [Int], output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, hkv = shape.kvHeads, g = shape.groupSize, hq = shape.queryHeads
        let scale = 1 / Float(d).squareRoot()
        if phase == .prefill, let rec = recorder {
            rec.record(layer: layer, rows: rows, isStepEnd: isStepEnd, pendingRows: pendingRows, queries: queries,
                       keys: keys, values: values, positions: positions, modelShape: modelShape)
        }
        let source = policy.sourceLayer(layer)
        let owns = source == layer
        let heads = stores[source]
        // Head pooling: each stored KV head holds the mean of the model's r = Hkv / Hkv' heads.
        var keys = keys, values = values
        let r = modelShape.kvHeads / hkv
        if owns && r > 1 {
            pooledKeys = Self.meanPool(keys, rows: rows, heads: modelShape.kvHeads, factor: r, dim: d)
            pooledValues = Self.meanPool(values, rows: rows, heads: modelShape.kvHeads, factor: r, dim: d)
            keys = pooledKeys.withUnsafeBufferPointer { $0.baseAddress! }
            values = pooledValues.withUnsafeBufferPointer { $0.baseAddress! }
        }
        if owns {
            for h in 0..<hkv {
                let st = heads[h]
                st.reserve(st.count + rows)
                for r in 0..<rows {
                    st.append(key: keys + (r * hkv + h) * d, value: values + (r * hkv + h) * d, position: positions[r])
                }
                if let p = bases[source][h] { rotate(st.keys + (st.count - rows) * d, rows: rows, ld: d, basis: p) }
            }
            // High-water mark: every store holds its new tokens and nothing is evicted yet.
            remeasure(source)
            stats.peakBytesStored = max(stats.peakBytesStored, livePayload)
        }
        // Queries in the stores' key bases (q.k unchanged for an orthonormal basis).
        var queries = queries
        if bases[source].contains(where: { $0 != nil }) {
            rotatedQueries = Array(UnsafeBufferPointer(start: queries, count: rows * hq * d))
            rotatedQueries.withUnsafeMutableBufferPointer { buf in
                for qh in 0..<hq {
                    if let p = bases[source][qh / g] { rotate(buf.baseAddress! + qh * d, rows: rows, ld: hq * d, basis: p) }
                }
            }
            queries = rotatedQueries.withUnsafeBufferPointer { $0.baseAddress! }
        }
        if layer == 0 { stats.tokensSeen += rows }
        rememberQueries(layer: layer, queries: queries, rows: rows)
        recent[layer].withUnsafeBufferPointer { recentBuf in
            let step = LayerStep(layer: layer, phase: phase, isStepEnd: isStepEnd, compress: compressionEnabled,
                                 rows: rows, queries: queries, positions: positions,
                                 recentQueries: recentBuf.baseAddress ?? queries, recentCount: recentBuf.count / (hq * d),
                                 stores: heads, shape: shape, tokensSeen: stats.tokensSeen, promptLength: promptLength,
                                 pendingRows: phase == .decode ? 0 : pendingRows, prefillEnd: prefillEnd, meter: meter)
            if owns { policy.didAppend(step) }
            if phase == .decode && rows == 1 {
                decodeAttention(step, scale: scale, output: output)
            } else {
                if owns { restoreOrder(layer: layer) }
                // Over merged tokens the store's positions are not increasing, but every old token
                // precedes the new ones, so the visible counts are still prefixes.
                if policy.selectsRows(.prefill) {
                    selectedPrefill(step, scale: scale, output: output)
                } else {
                    for h in 0..<hkv {
                        let st = heads[h], visible = Attention.visibleCounts(store: st, positions: positions)
                        meterPrefill(rowsRead: visible.reduce(0, +))
                        if replaying { continue }           // the recorded dense prefill computed this output
                        for qh in h * g..<(h + 1) * g {
                            Attention.causal(q: queries + qh * d, ldq: hq * d, rows: rows, store: st, visible: visible,
                                             scale: scale, out: output + qh * d, ldo: hq * d)
                        }
                    }
                }
            }
            if !replaying { probe?.attentionOutput(layer: layer, phase: phase, rows: rows, output: output) }
            if owns && isStepEnd && compressionEnabled {
                for h in 0..<hkv {
                    guard let keep = policy.retain(step, head: h) else { continue }
                    apply(keep: keep, layer: layer, head: h)
                }
            }
            // KIVI: quantize at the step end, after retention (scorers saw Float32 keys).
            if owns && isStepEnd { for st in heads { st.quantizeResidual() } }
            if owns && isStepEnd && policy.shiftsPositions { shiftPositions(layer: layer, next: (positions.max() ?? -1) + 1) }
            // MiniCache: once the upper layer of a pair has its tokens, merge the pair.
            if owns && isStepEnd, let pair = mergePairs[layer] { mergeLayers(lower: pair.lower, upper: layer, states: pair.states) }
            if owns && isStepEnd {
                remeasure(source)
                if let pair = mergePairs[layer] { remeasure(pair.lower) }
            }
        }
    }

    /// Updates the running payload total after layer `l`'s stores changed.
    private func remeasure(_ l: Int) {
        let bytes = stores[l].reduce(0) { $0 + $1.payloadBytes }
        livePayload += bytes - layerPayload[l]
        layerPayload[l] = bytes
    }

    /// Applies a retention (increasing store indices). Dropping a single token is O(d): the last
    /// token moves into its slot; larger evictions compact in order.
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

    /// Position shift (StreamingLLM's variant; kvpress's key re-rotation): the stored keys are kept
    /// rotated as if the cache were contiguous: the token of rank i (by original position) at rotary
    /// position i + (next - count), where `next` is the next token's position. Scores depend only on
    /// position differences, so this equals RoPE at cache positions 0..<count with the query at
    /// `count`, while the newest tokens and the queries keep their absolute rotation (nothing to redo
    /// for them). Each eviction moves the tokens older than it forward by the number evicted, e.g.
    /// only the sinks for StreamingLLM; a key is re-rotated by the difference, in place.
    private func shiftPositions(layer: Int, next: Int) {
        guard let rope = rotary else { preconditionFailure("\(policy.name): position shift needs the model's rotary embedding (KVCache.rotary)") }
        let d = shape.headDim, half = d / 2
        var c = [Float](repeating: 0, count: half), s = [Float](repeating: 0, count: half)
        for (h, st) in stores[layer].enumerated() {
            let n = st.count, offset = next - n
            guard offset != rotaryOffset[layer][h] else { continue }   // nothing evicted since the last shift
            rotaryOffset[layer][h] = offset
            let order = st.isOrdered ? Array(0..<n) : (0..<n).sorted { st.position($0) < st.position($1) }
            var shift = rotaryShift[layer][h]
            for (rank, i) in order.enumerated() {
                let p = Int32(st.position(i)), target = Int32(rank + offset)
                let current = shift[p] ?? p
                guard target != current else { continue }
                rope.angles(position: Int(target - current), cos: &c, sin: &s)
                rope.rotate(st.keys + i * d, cos: c, sin: s)
                shift[p] = target == p ? nil : target
            }
            // Forget tokens no longer stored.
            if shift.count > 0 && shift.count * 4 > n { let held = Set((0..<n).map { Int32(st.position($0)) }); shift = shift.filter { held.contains($0.key) } }
            rotaryShift[layer][h] = shift
        }
    }

    /// Merges the new tokens of a layer pair (MiniCache) and tells the policy how indices moved.
    private func mergeLayers(lower: Int, upper: Int, states: [PairMergeState]) {
        guard let spec = policy.layerMerge else { return }
        for h in 0..<shape.kvHeads {
            guard let maps = LayerMerge.merge(lower: stores[lower][h], upper: stores[upper][h], state: states[h],
                                              spec: spec, compress: compressionEnabled) else { continue }
            policy.didRetain(layer: lower, head: h, kept: maps.lower)
            policy.didRetain(layer: upper, head: h, kept: maps.upper)
        }
    }

    /// Causal prefill masking needs increasing positions: undo decode-time slot reuse.
    private func restoreOrder(layer: Int) {
        for (h, store) in stores[layer].enumerated() where !store.isOrdered {
            policy.didRetain(layer: layer, head: h, kept: store.restoreOrder())
        }
    }

    private func decodeAttention(_ step: LayerStep, scale: Float, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, hkv = shape.kvHeads, g = shape.groupSize
        let heads = step.stores
        ensureScratch(g * (heads.map(\.count).max() ?? 0))
        let parallel = threads > 1 && hkv > 1 && heads[0].count >= 256
        // Selection runs inside each head's work, so heads select in parallel too; each head
        // meters into its own ReadMeter (merged below), as `CachePolicy.select` documents.
        let meters = parallel ? (0..<hkv).map { _ in ReadMeter() } : []
        let selections = UnsafeMutablePointer<[Int32]?>.allocate(capacity: hkv)
        selections.initialize(repeating: nil, count: hkv)
        let readRows = UnsafeMutablePointer<Int>.allocate(capacity: hkv)
        defer { selections.deinitialize(count: hkv); selections.deallocate(); readRows.deallocate() }
        let rowSelect = policy.selectsRows(.decode)
        let work = { (h: Int) in
            let st = parallel ? step.with(meter: meters[h]) : step
            let rowSel = rowSelect ? self.policy.selectRows(st, head: h, rows: 0..<1, visible: [heads[h].count]) : nil
            if let rs = rowSel, rs.perQueryHead {
                // Each query head attends its own list; observers see the union, zeros where a head did not select.
                (selections[h], readRows[h]) = Self.attendPerQueryHead(rs.lists, q: step.queries + h * g * d, groups: g,
                                                                       store: heads[h], scale: scale, probs: self.scratch[h],
                                                                       out: output + h * g * d)
                return
            }
            let sel = rowSelect ? (rowSel?.lists.first ?? nil) : self.policy.select(st, head: h, candidates: nil)
            if let sel {
                precondition(sel.allSatisfy { $0 >= 0 && Int($0) < heads[h].count }, "\(self.policy.name): selected a token not in the store")
            }
            selections[h] = sel
            let run = { (idx: UnsafeBufferPointer<Int32>?) in
                readRows[h] = Attention.decode(q: step.queries + h * g * d, groups: g, store: heads[h], indices: idx,
                                               scale: scale, probs: self.scratch[h], out: output + h * g * d)
            }
            if let sel { sel.withUnsafeBufferPointer { run($0) } } else { run(nil) }
        }
        if parallel {
            DispatchQueue.concurrentPerform(iterations: hkv, execute: work)
            for m in meters { meter.keyBytes += m.keyBytes; meter.valueBytes += m.valueBytes; meter.metadataBytes += m.metadataBytes }
        } else {
            for h in 0..<hkv { work(h) }
        }
        for h in 0..<hkv {
            meter.keyBytes += heads[h].lastReadBytes.keys      // readRows[h] Float32 rows, or codes (KIVI)
            meter.valueBytes += heads[h].lastReadBytes.values
            policy.observe(step, head: h, indices: selections[h], probs: scratch[h], count: readRows[h])
            probe?.decodeProbabilities(layer: step.layer, head: h, store: heads[h], indices: selections[h],
                                       probs: scratch[h], count: readRows[h])
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

    /// x [rows, heads * d] -> [rows, heads / factor * d]: each output head the mean of `factor` adjacent heads.
    static func meanPool(_ x: UnsafePointer<Float>, rows: Int, heads: Int, factor: Int, dim d: Int) -> [Float] {
        let out = heads / factor
        var y = [Float](repeating: 0, count: rows * out * d)
        let inv = 1 / Float(factor)
        for r in 0..<rows { for p in 0..<out { for m in 0..<factor {
            let src = x + (r * heads + p * factor + m) * d
            let dst = (r * out + p) * d
            for i in 0..<d { y[dst + i] += src[i] * inv }
        } } }
        return y
    }

    /// x [rows, ld] (each row's first d entries) <- x P, in place, for a basis P [d, d].
    private func rotate(_ x: UnsafeMutablePointer<Float>, rows: Int, ld: Int, basis p: [Float]) {
        let d = shape.headDim
        var tmp = [Float](repeating: 0, count: d)
        p.withUnsafeBufferPointer { pb in
            for r in 0..<rows {
                let row = x + r * ld
                for j in 0..<d { tmp[j] = 0 }
                for i in 0..<d { let v = row[i]; let pr = pb.baseAddress! + i * d; for j in 0..<d { tmp[j] += v * pr[j] } }
                for j in 0..<d { row[j] = tmp[j] }
            }
        }
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
        for pair in mergePairs.values { pair.states.forEach { $0.reset() } }
        rotaryShift = rotaryShift.map { $0.map { _ in [:] } }
        rotaryOffset = rotaryOffset.map { $0.map { _ in 0 } }
        policy.reset()
    }

    func ensureScratch(_ n: Int) {
        if scratch.count == shape.kvHeads && n <= scratchCapacity { return }
        scratch.forEach { $0.deallocate() }
        scratchCapacity = max(n, scratchCapacity * 2, 1024)
        scratch = (0..<shape.kvHeads).map { _ in .allocate(capacity: scratchCapacity) }
    }
}

extension LayerStep {
    /// The same step metering into `m` (per-head meters while heads select in parallel).
    func with(meter m: ReadMeter) -> LayerStep {
        LayerStep(layer: layer, phase: phase, isStepEnd: isStepEnd, compress: compress, rows: rows, queries: queries,
                  positions: positions, recentQueries: recentQueries, recentCount: recentCount, stores: stores,
                  shape: shape, tokensSeen: tokensSeen, promptLength: promptLength, pendingRows: pendingRows, prefillEnd: prefillEnd, meter: m)
    }
}
