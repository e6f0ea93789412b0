/// The storage of one (layer, KV head): the cache's unit of memory.
///
/// Tokens are kept in insertion order with their original positions, so evicting a
/// token compacts the arrays and really frees its bytes (capacity shrinks on demand).
public final class HeadStore {
    public let headDim: Int                               // d
    public internal(set) var count: Int = 0               // T, tokens held
    public private(set) var capacity: Int = 0                     // Float32 rows allocated
    private(set) var fpKeys: UnsafeMutablePointer<Float>           // [capacity, d], post-RoPE
    private(set) var fpValues: UnsafeMutablePointer<Float>         // [capacity, d]
    /// Float32 keys [count, d] (post-RoPE): row i at `keys + i * d`. Under quantization or merging
    /// only rows i >= `compactCount` are held in Float32 (read older rows with `key(_:into:)`).
    public var keys: UnsafeMutablePointer<Float> { fpKeys - compactCount * headDim }
    /// Float32 values [count, d]; the same rule as `keys`.
    public var values: UnsafeMutablePointer<Float> { fpValues - compactCount * headDim }
    public private(set) var positions: UnsafeMutablePointer<Int32> // [positionCapacity], original positions
    private var positionCapacity = 0
    /// KIVI: the oldest tokens as packed codes (nil = everything Float32). See `enableQuantization`.
    public private(set) var quantized: QuantizedStore?
    /// Tokens held as codes: store indices [0, quantizedCount); the rest are Float32.
    @inline(__always) public var quantizedCount: Int { quantized?.count ?? 0 }
    /// MiniCache: the oldest tokens as norms + a direction shared with the paired layer (nil = none).
    public internal(set) var merged: MergedSection?
    /// Tokens not held as Float32 rows (codes or merged): store indices [0, compactCount).
    @inline(__always) public var compactCount: Int { quantizedCount + (merged?.count ?? 0) }
    /// Key and value bytes the last decode kernel call read from this store.
    public internal(set) var lastReadBytes = (keys: 0, values: 0)
    /// Whether positions increase with the index. Single evictions during decoding move the last
    /// token into the hole (O(d) instead of shifting the whole window); the cache restores the
    /// order before a prefill needs it for causal masking.
    public private(set) var isOrdered = true

    public init(headDim: Int, initialCapacity: Int = 64) {
        self.headDim = headDim
        let cap = max(initialCapacity, 1)
        fpKeys = .allocate(capacity: cap * headDim)
        fpValues = .allocate(capacity: cap * headDim)
        positions = .allocate(capacity: cap)
        capacity = cap; positionCapacity = cap
    }

    deinit {
        fpKeys.deallocate(); fpValues.deallocate(); positions.deallocate()
    }

    /// Bytes of key and value payload held (what "KV bytes stored" means): Float32 rows, plus
    /// codes, scales and zero points of the quantized tokens.
    public var payloadBytes: Int {
        (count - compactCount) * headDim * MemoryLayout<Float>.stride * 2 + (quantized?.payloadBytes ?? 0) + (merged?.payloadBytes ?? 0)
    }
    /// Bytes of bookkeeping held per token (original positions; key-group token counts when quantized).
    public var metadataBytes: Int { count * MemoryLayout<Int32>.stride + (quantized?.metadataBytes ?? 0) + (merged?.metadataBytes ?? 0) }
    /// Bytes allocated, held or not.
    public var allocatedBytes: Int {
        capacity * headDim * MemoryLayout<Float>.stride * 2 + positionCapacity * MemoryLayout<Int32>.stride
            + (quantized?.allocatedBytes ?? 0) + (merged?.allocatedBytes ?? 0)
    }

    /// Ensures room for `n` tokens (geometric growth).
    public func reserve(_ n: Int) {
        if n > positionCapacity {
            let cap = max(n, positionCapacity * 2)
            let np = UnsafeMutablePointer<Int32>.allocate(capacity: cap)
            np.update(from: positions, count: count)
            positions.deallocate(); positions = np; positionCapacity = cap
        }
        let rows = n - compactCount
        guard rows > capacity else { return }
        resize(to: max(rows, capacity * 2))
    }

    func resize(to newCap: Int) {
        let fp = count - compactCount
        let nk = UnsafeMutablePointer<Float>.allocate(capacity: newCap * headDim)
        let nv = UnsafeMutablePointer<Float>.allocate(capacity: newCap * headDim)
        nk.update(from: fpKeys, count: fp * headDim)
        nv.update(from: fpValues, count: fp * headDim)
        fpKeys.deallocate(); fpValues.deallocate()
        fpKeys = nk; fpValues = nv; capacity = newCap
    }

    /// Stores this head's older tokens as KIVI codes from now on (call while empty).
    public func enableQuantization(_ spec: QuantizationSpec) {
        precondition(count == 0 && merged == nil, "enableQuantization: the store must be empty and not merged")
        quantized = QuantizedStore(spec: spec, headDim: headDim)
    }

    /// At a step end: while more than R + G - 1 tokens are Float32, quantizes the oldest G of them
    /// as one key group (so the newest R to R + G - 1 tokens stay Float32). Indices do not change.
    public func quantizeResidual() {
        guard let q = quantized else { return }
        let g = q.spec.groupSize, d = headDim
        var fp = count - q.count
        guard fp >= q.spec.residual + g else { return }
        var moved = 0
        while fp - moved >= q.spec.residual + g {
            q.appendGroup(keys: fpKeys + moved * d, values: fpValues + moved * d, rows: g)
            moved += g
        }
        fp -= moved
        fpKeys.update(from: fpKeys + moved * d, count: fp * d)
        fpValues.update(from: fpValues + moved * d, count: fp * d)
        if capacity > 256 && fp * 4 <= capacity { resize(to: max(fp * 2, 64)) }
    }

    /// Key of token i as Float32 (dequantized or restored from its merged direction). out: [d]
    public func key(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        if let m = merged, i < m.count { return m.key(i, into: out) }
        if i < quantizedCount { quantized!.dequantizeKey(i, into: out) } else { out.update(from: keys + i * headDim, count: headDim) }
    }

    /// Value of token i as Float32 (dequantized or restored from its merged direction). out: [d]
    public func value(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        if let m = merged, i < m.count { return m.value(i, into: out) }
        if i < quantizedCount { quantized!.dequantizeValue(i, into: out) } else { out.update(from: values + i * headDim, count: headDim) }
    }

    /// A Float32 store holding every token of this one in the same index order, quantized tokens
    /// dequantized and merged ones restored (exact prefill attention and probability kernels over
    /// a quantized or merged store read this temporary copy).
    public func dequantizedCopy() -> HeadStore {
        let c = HeadStore(headDim: headDim, initialCapacity: count)
        let k = UnsafeMutablePointer<Float>.allocate(capacity: headDim), v = UnsafeMutablePointer<Float>.allocate(capacity: headDim)
        defer { k.deallocate(); v.deallocate() }
        for i in 0..<count { key(i, into: k); value(i, into: v); c.append(key: k, value: v, position: position(i)) }
        return c
    }

    /// Appends one token: key [d], value [d] read with the given strides of 1.
    @inline(__always)
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int) {
        reserve(count + 1)
        let r = count - compactCount
        (fpKeys + r * headDim).update(from: key, count: headDim)
        (fpValues + r * headDim).update(from: value, count: headDim)
        positions[count] = Int32(position)
        count += 1
    }

    /// Keeps only the tokens at `indices` (strictly increasing store indices), in their order.
    /// Shrinks the allocation when at most a quarter of it stays in use.
    public func retain(_ indices: [Int]) {
        precondition(indices.count <= count, "retain: more indices than tokens")
        if let q = quantized { retainCompact(indices, prefix: q.count, retainPrefix: q.retain); return }
        if let m = merged { retainCompact(indices, prefix: m.count, retainPrefix: m.retain); return }
        var w = 0
        for i in indices {
            precondition(i >= w && i < count, "retain: indices must be increasing and in range")
            if i != w {
                (keys + w * headDim).update(from: keys + i * headDim, count: headDim)
                (values + w * headDim).update(from: values + i * headDim, count: headDim)
                positions[w] = positions[i]
            }
            w += 1
        }
        count = w
        if capacity > 256 && count * 4 <= capacity { resize(to: max(count * 2, 64)) }
    }

    /// Retention on a quantized or merged store: the compact prefix keeps its entries
    /// (`QuantizedStore.retain`, `MergedSection.retain`), Float32 rows compact after them; order is kept.
    private func retainCompact(_ indices: [Int], prefix qn: Int, retainPrefix: ([Int]) -> Void) {
        let d = headDim
        let split = indices.firstIndex { $0 >= qn } ?? indices.count
        var w = 0
        for i in indices {
            precondition(i >= w && i < count, "retain: indices must be increasing and in range")
            positions[w] = positions[i]; w += 1
        }
        retainPrefix(Array(indices[..<split]))
        var r = 0
        for i in indices[split...] {
            let src = i - qn
            if src != r {
                (fpKeys + r * d).update(from: fpKeys + src * d, count: d)
                (fpValues + r * d).update(from: fpValues + src * d, count: d)
            }
            r += 1
        }
        count = w
        if capacity > 256 && r * 4 <= capacity { resize(to: max(r * 2, 64)) }
    }

    /// Removes token `i` by moving the last token into its slot: O(d). Returns the mapping
    /// new index -> old index (what `CachePolicy.didRetain` receives).
    @discardableResult
    public func remove(at i: Int) -> [Int] {
        precondition(i >= 0 && i < count, "remove: index out of range")
        if quantized != nil || merged != nil {
            // Codes and merged tokens cannot take a Float32 row's slot: compact in order instead.
            let keep = Array(0..<i) + Array((i + 1)..<count)
            retain(keep)
            return keep
        }
        let last = count - 1
        if i != last {
            (keys + i * headDim).update(from: keys + last * headDim, count: headDim)
            (values + i * headDim).update(from: values + last * headDim, count: headDim)
            positions[i] = positions[last]
            if last - i > 1 || (i > 0 && positions[i] < positions[i - 1]) { isOrdered = false }
        }
        count = last
        var map = Array(0..<count)
        if i != last { map[i] = last }
        return map
    }

    /// Sorts the tokens by position; returns the mapping new index -> old index.
    @discardableResult
    public func restoreOrder() -> [Int] {
        guard !isOrdered else { return Array(0..<count) }
        let order = (0..<count).sorted { positions[$0] < positions[$1] }
        let k = UnsafeMutablePointer<Float>.allocate(capacity: count * headDim)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: count * headDim)
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: count)
        defer { k.deallocate(); v.deallocate(); p.deallocate() }
        for (w, r) in order.enumerated() {
            (k + w * headDim).update(from: keys + r * headDim, count: headDim)
            (v + w * headDim).update(from: values + r * headDim, count: headDim)
            p[w] = positions[r]
        }
        keys.update(from: k, count: count * headDim)
        values.update(from: v, count: count * headDim)
        positions.update(from: p, count: count)
        isOrdered = true
        return order
    }

    /// Removes every token.
    public func removeAll() { count = 0; isOrdered = true; quantized?.removeAll(); merged?.removeAll() }

    /// Position of token i.
    @inline(__always) public func position(_ i: Int) -> Int { Int(positions[i]) }
}
