import Foundation
import KVTensor

extension StorageLayout {
    /// The stores of a cache, [layer][kvHead], each holding its rows in the layout's format: KIVI
    /// codes, merged rows for the layer pairs MiniCache merges (one shared set of directions per
    /// pair and KV head), float rows otherwise. A layer that reads another's store gets room for one token.
    /// Float rows (the full cache's, KIVI's residual, MiniCache's unmerged rows) are in `dtype`.
    func makeStores(shape: CacheShape, owns: (Int) -> Bool, initialCapacity: Int, dtype: KVDType = .f32) -> [[HeadStore]] {
        var shared: [Int: [MergedDirections]] = [:]               // layer -> per KV head, for both layers of a pair
        for (a, b) in layerMerge?.pairs(layers: shape.layers) ?? [] {
            let dirs = (0..<shape.kvHeads).map { _ in MergedDirections(headDim: shape.headDim) }
            shared[a] = dirs; shared[b] = dirs
        }
        return (0..<shape.layers).map { l in
            let cap = owns(l) ? initialCapacity : 1
            return (0..<shape.kvHeads).map { h in
                let d = shape.headDim
                let rows: KVRows
                if let q = quantization { rows = QuantizedRows(spec: q, headDim: d, initialCapacity: cap, dtype: dtype) }
                else if let dirs = shared[l] { rows = MergedRows(shared: dirs[h], headDim: d, initialCapacity: cap, dtype: dtype) }
                else { rows = dtype.makeRows(headDim: d, initialCapacity: cap) }
                return HeadStore(headDim: d, initialCapacity: cap, rows: rows)
            }
        }
    }
}

/// What the cache does for its storage layout around each layer step, so that `KVCache.attention`
/// has one path for every policy: new keys and values enter the stores pooled (head pooling) and
/// in the key basis (Loki), queries follow the basis; at a step end the stores' formats tidy up
/// (KIVI codes), stored keys are re-rotated (position shift) and layer pairs merged (MiniCache).
final class LayoutSteps {
    let layout: StorageLayout
    let shape: CacheShape                                      // as stored
    let modelKVHeads: Int
    private let bases: [[[Float]?]]                            // [layer][kvHead] key basis P [d, d] or nil
    private var inputKeys: [Float] = [], inputValues: [Float] = []   // scratch [rows, Hkv'*d]
    private var rotatedQueries: [Float] = []                   // scratch [rows, H*d]
    /// Position shift: per (layer, KV head), original position -> rotary position of the stored
    /// keys whose rotation differs from their original position (keyed by position, so it survives
    /// every index move).
    private var rotaryShift: [[[Int32: Int32]]]
    /// Position shift: per (layer, KV head), next position - tokens held at the last shift. It grows
    /// exactly when tokens were evicted; while it stays, no stored key needs re-rotating.
    private var rotaryOffset: [[Int]]
    /// MiniCache: for the upper layer of each merged pair, its lower layer and per-KV-head state.
    let mergePairs: [Int: (lower: Int, states: [PairMergeState])]

    init(layout: StorageLayout, shape: CacheShape, modelKVHeads: Int) {
        self.layout = layout; self.shape = shape; self.modelKVHeads = modelKVHeads
        if let p = layout.kvHeadProjection {
            precondition(p.layers == shape.layers && p.modelKVHeads == modelKVHeads && p.headDim == shape.headDim && p.storedKVHeads == shape.kvHeads,
                         "\(layout.owner): KV-head projection does not fit the model's shape")
        }
        bases = (0..<shape.layers).map { l in (0..<shape.kvHeads).map { layout.keyBasis?(l, $0) } }
        rotaryShift = Array(repeating: Array(repeating: [:], count: shape.kvHeads), count: shape.layers)
        rotaryOffset = Array(repeating: Array(repeating: 0, count: shape.kvHeads), count: shape.layers)
        var pairs: [Int: (lower: Int, states: [PairMergeState])] = [:]
        for (a, b) in layout.layerMerge?.pairs(layers: shape.layers) ?? [] {
            pairs[b] = (a, (0..<shape.kvHeads).map { _ in PairMergeState() })
        }
        mergePairs = pairs
    }

    func reset() {
        for pair in mergePairs.values { pair.states.forEach { $0.reset() } }
        rotaryShift = rotaryShift.map { $0.map { _ in [:] } }
        rotaryOffset = rotaryOffset.map { $0.map { _ in 0 } }
    }

    /// The new tokens as the stores keep them: keys and values [rows, Hkv*d] of the model pooled to
    /// [rows, Hkv'*d] (each stored head the mean of its group, or its low-rank projection under a
    /// KV-head projection), keys multiplied by their head's basis.
    func input(layer: Int, rows: Int, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
               _ body: (_ keys: UnsafePointer<Float>, _ values: UnsafePointer<Float>) -> Void) {
        let d = shape.headDim, hkv = shape.kvHeads, r = modelKVHeads / hkv
        let rotates = bases[layer].contains { $0 != nil }
        if let p = layout.kvHeadProjection {   // SVD head compression (KVHeadProjection.swift)
            inputKeys = p.projectKeys(layer: layer, keys, rows: rows)
            inputValues = p.projectValues(layer: layer, values, rows: rows)
            return inputKeys.withUnsafeBufferPointer { k in inputValues.withUnsafeBufferPointer { body(k.baseAddress!, $0.baseAddress!) } }
        }
        guard r > 1 || rotates else { return body(keys, values) }
        if r > 1 {
            inputKeys = Self.meanPool(keys, rows: rows, heads: modelKVHeads, factor: r, dim: d)
            inputValues = Self.meanPool(values, rows: rows, heads: modelKVHeads, factor: r, dim: d)
        } else {
            inputKeys = Array(UnsafeBufferPointer(start: keys, count: rows * hkv * d))
        }
        if rotates {
            inputKeys.withUnsafeMutableBufferPointer { k in
                for h in 0..<hkv { if let p = bases[layer][h] { Self.rotate(k.baseAddress! + h * d, rows: rows, ld: hkv * d, dim: d, basis: p) } }
            }
        }
        inputKeys.withUnsafeBufferPointer { k in
            if r > 1 { inputValues.withUnsafeBufferPointer { body(k.baseAddress!, $0.baseAddress!) } } else { body(k.baseAddress!, values) }
        }
    }

    /// Queries [rows, H*d] in their KV head's key basis (q.k unchanged for an orthonormal basis), or
    /// mapped to the projected keys under a KV-head projection.
    func queries(layer: Int, rows: Int, _ q: UnsafePointer<Float>, _ body: (UnsafePointer<Float>) -> Void) {
        if let p = layout.kvHeadProjection {
            rotatedQueries = p.transformQueries(layer: layer, q, rows: rows, queryHeads: shape.queryHeads)
            return rotatedQueries.withUnsafeBufferPointer { body($0.baseAddress!) }
        }
        guard bases[layer].contains(where: { $0 != nil }) else { return body(q) }
        let d = shape.headDim, hq = shape.queryHeads, g = shape.groupSize
        rotatedQueries = Array(UnsafeBufferPointer(start: q, count: rows * hq * d))
        rotatedQueries.withUnsafeMutableBufferPointer { buf in
            for qh in 0..<hq {
                if let p = bases[layer][qh / g] { Self.rotate(buf.baseAddress! + qh * d, rows: rows, ld: hq * d, dim: d, basis: p) }
            }
        }
        rotatedQueries.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    /// Attention output [rows, H*d] back in the model's value space under a KV-head projection
    /// (each query head's output times its model head's U_m^T), in place; nothing otherwise.
    func output(layer: Int, rows: Int, _ out: UnsafeMutablePointer<Float>) {
        layout.kvHeadProjection?.transformOutput(layer: layer, out, rows: rows, queryHeads: shape.queryHeads)
    }

    /// After retention at a step end of a layer that owns its stores: the formats' housekeeping
    /// (KIVI: older tokens become codes, after retention so scorers saw Float32 keys), the position
    /// shift, then MiniCache's merge of the pair whose upper layer this is. `moved(layer, head,
    /// kept)` tells the policy how indices moved. Returns the other layer whose stores changed.
    func stepEnd(layer: Int, stores: [[HeadStore]], next: Int, rotary: RotaryEmbedding?, compress: Bool,
                 moved: (Int, Int, [Int]) -> Void) -> Int? {
        for st in stores[layer] { st.rows.endStep() }
        if layout.positionShift { shiftPositions(layer: layer, stores: stores[layer], next: next, rotary: rotary) }
        guard let pair = mergePairs[layer], let spec = layout.layerMerge else { return nil }
        for h in 0..<shape.kvHeads {
            guard let maps = LayerMerge.merge(lower: stores[pair.lower][h], upper: stores[layer][h], state: pair.states[h],
                                              spec: spec, compress: compress) else { continue }
            moved(pair.lower, h, maps.lower)
            moved(layer, h, maps.upper)
        }
        return pair.lower
    }

    /// Position shift (StreamingLLM's variant; kvpress's key re-rotation): the stored keys are kept
    /// rotated as if the cache were contiguous: the token of rank i (by original position) at rotary
    /// position i + (next - count), where `next` is the next token's position. Scores depend only on
    /// position differences, so this equals RoPE at cache positions 0..<count with the query at
    /// `count`, while the newest tokens and the queries keep their absolute rotation (nothing to redo
    /// for them). Each eviction moves the tokens older than it forward by the number evicted, e.g.
    /// only the sinks for StreamingLLM; a key is re-rotated by the difference, in place.
    private func shiftPositions(layer: Int, stores: [HeadStore], next: Int, rotary: RotaryEmbedding?) {
        guard let rope = rotary else { preconditionFailure("\(layout.owner): position shift needs the model's rotary embedding (KVCache.rotary)") }
        let half = shape.headDim / 2
        var c = [Float](repeating: 0, count: half), s = [Float](repeating: 0, count: half)
        for (h, st) in stores.enumerated() {
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
                st.rows.updateKey(i) { rope.rotate($0, cos: c, sin: s) }
                shift[p] = target == p ? nil : target
            }
            // Forget tokens no longer stored.
            if shift.count > 0 && shift.count * 4 > n { let held = Set((0..<n).map { Int32(st.position($0)) }); shift = shift.filter { held.contains($0.key) } }
            rotaryShift[layer][h] = shift
        }
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
    static func rotate(_ x: UnsafeMutablePointer<Float>, rows: Int, ld: Int, dim d: Int, basis p: [Float]) {
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
}
