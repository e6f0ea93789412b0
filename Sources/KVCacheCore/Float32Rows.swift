/// Keys and values as rows of float elements (`KVElement`: Float32, binary16, bfloat16): the full
/// cache's storage, every policy's by default, and the residual of the compact formats. Keys and
/// values are rounded to the element when appended; the decode kernel (`Attention.run`) reads the
/// elements and converts them in registers, so the bytes held and read are the element's. Evicting
/// tokens compacts the rows and really frees their bytes (the allocation shrinks when at most a
/// quarter of it is in use).
///
/// The three types are concrete classes sharing this protocol's extension (not one generic class),
/// so that every call through `KVRows` reaches code specialised for its element.
public protocol ElementRows: KVRows {
    associatedtype Element: KVElement
    var count: Int { get set }                          // T
    var capacity: Int { get set }                       // rows allocated
    var keys: UnsafeMutablePointer<Element> { get set }   // [capacity, d], post-RoPE
    var values: UnsafeMutablePointer<Element> { get set } // [capacity, d]
    /// Drops the first `n` rows (KIVI moved them to codes).
    func dropFirst(_ n: Int)
}

/// Float32 rows (the default, `kv_dtype: f32`).
public final class Float32Rows: ElementRows {
    public let headDim: Int
    public var count = 0, capacity: Int
    public var keys: UnsafeMutablePointer<Float>, values: UnsafeMutablePointer<Float>
    public init(headDim: Int, initialCapacity: Int = 64) {
        self.headDim = headDim; capacity = max(initialCapacity, 1)
        keys = .allocate(capacity: capacity * headDim); values = .allocate(capacity: capacity * headDim)
    }
    deinit { keys.deallocate(); values.deallocate() }
}

/// IEEE binary16 rows (`kv_dtype: f16`).
public final class Float16Rows: ElementRows {
    public let headDim: Int
    public var count = 0, capacity: Int
    public var keys: UnsafeMutablePointer<Half>, values: UnsafeMutablePointer<Half>
    public init(headDim: Int, initialCapacity: Int = 64) {
        self.headDim = headDim; capacity = max(initialCapacity, 1)
        keys = .allocate(capacity: capacity * headDim); values = .allocate(capacity: capacity * headDim)
    }
    deinit { keys.deallocate(); values.deallocate() }
}

/// bfloat16 rows (`kv_dtype: bf16`).
public final class BFloat16Rows: ElementRows {
    public let headDim: Int
    public var count = 0, capacity: Int
    public var keys: UnsafeMutablePointer<BFloat16>, values: UnsafeMutablePointer<BFloat16>
    public init(headDim: Int, initialCapacity: Int = 64) {
        self.headDim = headDim; capacity = max(initialCapacity, 1)
        keys = .allocate(capacity: capacity * headDim); values = .allocate(capacity: capacity * headDim)
    }
    deinit { keys.deallocate(); values.deallocate() }
}

extension ElementRows {
    /// Bytes of one row of keys (or values).
    @inline(__always) var rowBytes: Int { headDim * MemoryLayout<Element>.stride }
    public var payloadBytes: Int { count * rowBytes * 2 }
    public var metadataBytes: Int { 0 }
    public var allocatedBytes: Int { capacity * rowBytes * 2 }

    /// Ensures room for `n` rows (geometric growth).
    public func reserve(_ n: Int) {
        guard n > capacity else { return }
        resize(to: max(n, capacity * 2))
    }

    func resize(to newCap: Int) {
        let nk = UnsafeMutablePointer<Element>.allocate(capacity: newCap * headDim)
        let nv = UnsafeMutablePointer<Element>.allocate(capacity: newCap * headDim)
        nk.update(from: keys, count: count * headDim)
        nv.update(from: values, count: count * headDim)
        keys.deallocate(); values.deallocate()
        keys = nk; values = nv; capacity = newCap
    }

    /// Gives memory back once at most a quarter of a large allocation is in use.
    private func shrinkIfSparse() {
        if capacity > 256 && count * 4 <= capacity { resize(to: max(count * 2, 64)) }
    }

    /// Appends one token, its key and value [d] rounded to the element.
    @inline(__always)
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        reserve(count + 1)
        let d = headDim
        let k = keys + count * d, v = values + count * d
        if Element.self == Float.self {
            UnsafeMutableRawPointer(k).copyMemory(from: key, byteCount: d * 4)
            UnsafeMutableRawPointer(v).copyMemory(from: value, byteCount: d * 4)
        } else {
            for c in 0..<d { k[c] = Element(rounding: key[c]); v[c] = Element(rounding: value[c]) }
        }
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

    public func dropFirst(_ n: Int) {
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
        let k = UnsafeMutablePointer<Element>.allocate(capacity: max(count * d, 1))
        let v = UnsafeMutablePointer<Element>.allocate(capacity: max(count * d, 1))
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

    public func key(_ i: Int, into out: UnsafeMutablePointer<Float>) { Self.widen(keys + i * headDim, into: out, count: headDim) }
    public func value(_ i: Int, into out: UnsafeMutablePointer<Float>) { Self.widen(values + i * headDim, into: out, count: headDim) }

    /// Float32 rows themselves; 16-bit rows converted into a copy of the range only (callers that
    /// sweep a store go block by block, e.g. `Attention.causal`).
    public func withFloat32<R>(_ range: Range<Int>, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) throws -> R) rethrows -> R {
        let d = headDim, lo = range.lowerBound * d
        if Element.self == Float.self {
            return try body(UnsafeRawPointer(keys + lo).assumingMemoryBound(to: Float.self),
                            UnsafeRawPointer(values + lo).assumingMemoryBound(to: Float.self))
        }
        let n = max(range.count * d, 1)
        let k = UnsafeMutablePointer<Float>.allocate(capacity: n), v = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { k.deallocate(); v.deallocate() }
        Self.widen(keys + lo, into: k, count: range.count * d)
        Self.widen(values + lo, into: v, count: range.count * d)
        return try body(k, v)
    }

    /// Position shift: the key widened to Float32, changed, and rounded back.
    public func updateKey(_ i: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        let k = keys + i * headDim
        if Element.self == Float.self { return body(UnsafeMutableRawPointer(k).assumingMemoryBound(to: Float.self)) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: headDim) { buf in
            let t = buf.baseAddress!
            Self.widen(k, into: t, count: headDim)
            body(t)
            for c in 0..<headDim { k[c] = Element(rounding: t[c]) }
        }
    }

    /// out[0..<n] = the elements as Float32, eight at a time.
    @inline(__always)
    static func widen(_ src: UnsafePointer<Element>, into out: UnsafeMutablePointer<Float>, count n: Int) {
        var c = 0
        while c + 8 <= n { UnsafeMutableRawPointer(out + c).storeBytes(of: Element.load8(src, c), as: SIMD8<Float>.self); c += 8 }
        while c < n { out[c] = src[c].float; c += 1 }
    }

    /// `Attention.run` over the rows: every attended row is one key and one value of d elements.
    public func decode(q: UnsafePointer<Float>, groups g: Int, indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        let d = headDim, n = indices?.count ?? count
        out.initialize(repeating: 0, count: g * d)
        let bytes = n * rowBytes
        guard n > 0 else { return RowsRead(rows: 0, keyBytes: bytes, valueBytes: bytes) }
        if let idx = indices, let base = idx.baseAddress {
            Attention.run(GatheredRows(indices: base), q: q, g: g, keys: keys, values: values, d: d, n: n, scale: scale, probs: probs, out: out)
        } else {
            Attention.run(DenseRows(), q: q, g: g, keys: keys, values: values, d: d, n: n, scale: scale, probs: probs, out: out)
        }
        return RowsRead(rows: n, keyBytes: bytes, valueBytes: bytes)
    }
}
