/// Keys and values as Float32 rows: the full cache's storage, every policy's by default, and the
/// residual of the compact formats. Evicting tokens compacts the rows and really frees their bytes
/// (the allocation shrinks when at most a quarter of it is in use).
public final class Float32Rows: KVRows {
    public let headDim: Int                                        // d
    public private(set) var count = 0                              // T
    public private(set) var capacity: Int                          // rows allocated
    public private(set) var keys: UnsafeMutablePointer<Float>      // [capacity, d], post-RoPE
    public private(set) var values: UnsafeMutablePointer<Float>    // [capacity, d]

    public init(headDim: Int, initialCapacity: Int = 64) {
        self.headDim = headDim
        capacity = max(initialCapacity, 1)
        keys = .allocate(capacity: capacity * headDim)
        values = .allocate(capacity: capacity * headDim)
    }

    deinit { keys.deallocate(); values.deallocate() }

    public var payloadBytes: Int { count * headDim * MemoryLayout<Float>.stride * 2 }
    public var metadataBytes: Int { 0 }
    public var allocatedBytes: Int { capacity * headDim * MemoryLayout<Float>.stride * 2 }

    /// Ensures room for `n` rows (geometric growth).
    public func reserve(_ n: Int) {
        guard n > capacity else { return }
        resize(to: max(n, capacity * 2))
    }

    func resize(to newCap: Int) {
        let nk = UnsafeMutablePointer<Float>.allocate(capacity: newCap * headDim)
        let nv = UnsafeMutablePointer<Float>.allocate(capacity: newCap * headDim)
        nk.update(from: keys, count: count * headDim)
        nv.update(from: values, count: count * headDim)
        keys.deallocate(); values.deallocate()
        keys = nk; values = nv; capacity = newCap
    }

    /// Gives memory back once at most a quarter of a large allocation is in use.
    private func shrinkIfSparse() {
        if capacity > 256 && count * 4 <= capacity { resize(to: max(count * 2, 64)) }
    }

    @inline(__always)
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        reserve(count + 1)
        (keys + count * headDim).update(from: key, count: headDim)
        (values + count * headDim).update(from: value, count: headDim)
        count += 1
    }

    public func retain(_ indices: [Int]) {
        precondition(indices.count <= count, "retain: more indices than rows")
        let d = headDim
        var w = 0
        for i in indices {
            precondition(i >= w && i < count, "retain: indices must be increasing and in range")
            if i != w {
                (keys + w * d).update(from: keys + i * d, count: d)
                (values + w * d).update(from: values + i * d, count: d)
            }
            w += 1
        }
        count = w
        shrinkIfSparse()
    }

    /// Drops the first `n` rows (KIVI moved them to codes).
    func dropFirst(_ n: Int) {
        guard n > 0 else { return }
        count -= n
        keys.update(from: keys + n * headDim, count: count * headDim)
        values.update(from: values + n * headDim, count: count * headDim)
        shrinkIfSparse()
    }

    public func moveLast(into i: Int) -> Bool {
        let last = count - 1
        if i != last {
            (keys + i * headDim).update(from: keys + last * headDim, count: headDim)
            (values + i * headDim).update(from: values + last * headDim, count: headDim)
        }
        count = last
        return true
    }

    public func reorder(_ order: [Int]) {
        let d = headDim
        let k = UnsafeMutablePointer<Float>.allocate(capacity: max(count * d, 1))
        let v = UnsafeMutablePointer<Float>.allocate(capacity: max(count * d, 1))
        defer { k.deallocate(); v.deallocate() }
        for (w, r) in order.enumerated() {
            (k + w * d).update(from: keys + r * d, count: d)
            (v + w * d).update(from: values + r * d, count: d)
        }
        keys.update(from: k, count: count * d)
        values.update(from: v, count: count * d)
    }

    public func removeAll() { count = 0 }
    public func endStep() {}

    public func key(_ i: Int, into out: UnsafeMutablePointer<Float>) { out.update(from: keys + i * headDim, count: headDim) }
    public func value(_ i: Int, into out: UnsafeMutablePointer<Float>) { out.update(from: values + i * headDim, count: headDim) }

    public func withFloat32<R>(_ range: Range<Int>, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) throws -> R) rethrows -> R {
        try body(keys + range.lowerBound * headDim, values + range.lowerBound * headDim)
    }

    public func updateKey(_ i: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) { body(keys + i * headDim) }

    /// `Attention.run` over the rows: every attended row is one key and one value of d floats.
    public func decode(q: UnsafePointer<Float>, groups g: Int, indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        let d = headDim, n = indices?.count ?? count
        out.initialize(repeating: 0, count: g * d)
        let bytes = n * d * MemoryLayout<Float>.stride
        guard n > 0 else { return RowsRead(rows: 0, keyBytes: bytes, valueBytes: bytes) }
        if let idx = indices, let base = idx.baseAddress {
            Attention.run(GatheredRows(indices: base), q: q, g: g, keys: keys, values: values, d: d, n: n, scale: scale, probs: probs, out: out)
        } else {
            Attention.run(DenseRows(), q: q, g: g, keys: keys, values: values, d: d, n: n, scale: scale, probs: probs, out: out)
        }
        return RowsRead(rows: n, keyBytes: bytes, valueBytes: bytes)
    }
}
