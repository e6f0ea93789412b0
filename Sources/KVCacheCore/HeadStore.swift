/// The storage of one (layer, KV head): the cache's unit of memory. It keeps each token's original
/// position; its `rows` keep the keys and values in a storage format (`KVRows`: Float32 rows by
/// default, KIVI codes, merged rows). Evicting tokens compacts both and really frees their bytes.
public final class HeadStore {
    public let headDim: Int                                        // d
    /// The tokens' keys and values, in the layout's format.
    public let rows: KVRows
    public private(set) var positions: UnsafeMutablePointer<Int32> // [positionCapacity], original positions
    private var positionCapacity = 0
    /// Whether positions increase with the index (in each section of a format with a compact prefix:
    /// MiniCache's merged tokens precede the Float32 rows, and every old token precedes the new ones).
    /// Single evictions during decoding move the last token into the hole (O(d) instead of shifting
    /// the whole window); the cache restores the order before a prefill needs it for causal masking.
    public private(set) var isOrdered = true

    public init(headDim: Int, initialCapacity: Int = 64, rows: KVRows? = nil) {
        self.headDim = headDim
        let cap = max(initialCapacity, 1)
        self.rows = rows ?? Float32Rows(headDim: headDim, initialCapacity: cap)
        positions = .allocate(capacity: cap)
        positionCapacity = cap
    }

    deinit { positions.deallocate() }

    /// Tokens held (T).
    @inline(__always) public var count: Int { rows.count }

    /// Float32 keys [count, d] (post-RoPE) of a store whose rows are `Float32Rows` (traps otherwise):
    /// for tools and tests that read a full cache. Policies read `rows` (`withFloat32`, `key(_:into:)`).
    public var keys: UnsafeMutablePointer<Float> { float32.keys }
    /// Float32 values [count, d]; the same rule as `keys`.
    public var values: UnsafeMutablePointer<Float> { float32.values }
    private var float32: Float32Rows {
        guard let f = rows as? Float32Rows else { preconditionFailure("HeadStore.keys/values: the rows are \(type(of: rows)), not Float32Rows") }
        return f
    }

    /// Bytes of key and value payload held (what "KV bytes stored" means).
    public var payloadBytes: Int { rows.payloadBytes }
    /// Bytes of bookkeeping held: original positions, and the format's own (key-group counts...).
    public var metadataBytes: Int { count * MemoryLayout<Int32>.stride + rows.metadataBytes }
    /// Bytes allocated, held or not.
    public var allocatedBytes: Int { rows.allocatedBytes + positionCapacity * MemoryLayout<Int32>.stride }

    /// Ensures room for `n` tokens (geometric growth).
    public func reserve(_ n: Int) {
        if n > positionCapacity {
            let cap = max(n, positionCapacity * 2)
            let np = UnsafeMutablePointer<Int32>.allocate(capacity: cap)
            np.update(from: positions, count: count)
            positions.deallocate(); positions = np; positionCapacity = cap
        }
        rows.reserve(n)
    }

    /// Key of token i as Float32 (restored from the format). out: [d]
    public func key(_ i: Int, into out: UnsafeMutablePointer<Float>) { rows.key(i, into: out) }
    /// Value of token i as Float32. out: [d]
    public func value(_ i: Int, into out: UnsafeMutablePointer<Float>) { rows.value(i, into: out) }

    /// Appends one token: key [d], value [d], at its original position.
    @inline(__always)
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int) {
        let n = count
        reserve(n + 1)
        rows.append(key: key, value: value)
        positions[n] = Int32(position)
    }

    /// Keeps only the tokens at `indices` (strictly increasing store indices), in their order.
    public func retain(_ indices: [Int]) {
        precondition(indices.count <= count, "retain: more indices than tokens")
        var w = 0
        for i in indices {
            precondition(i >= w && i < count, "retain: indices must be increasing and in range")
            positions[w] = positions[i]; w += 1
        }
        rows.retain(indices)
    }

    /// Removes token `i`: the last token moves into its slot (O(d)) where the format allows, in-order
    /// compaction otherwise. Returns the mapping new index -> old index (what
    /// `CachePolicy.didRetain` receives).
    @discardableResult
    public func remove(at i: Int) -> [Int] {
        precondition(i >= 0 && i < count, "remove: index out of range")
        let last = count - 1
        guard rows.moveLast(into: i) else {
            let keep = Array(0..<i) + Array((i + 1)..<(last + 1))
            retain(keep)
            return keep
        }
        if i != last {
            positions[i] = positions[last]
            if last - i > 1 || (i > 0 && positions[i] < positions[i - 1]) { isOrdered = false }
        }
        var map = Array(0..<last)
        if i != last { map[i] = last }
        return map
    }

    /// Sorts the tokens by position; returns the mapping new index -> old index.
    @discardableResult
    public func restoreOrder() -> [Int] {
        guard !isOrdered else { return Array(0..<count) }
        let order = (0..<count).sorted { positions[$0] < positions[$1] }
        rows.reorder(order)
        let p = order.map { positions[$0] }
        positions.update(from: p, count: p.count)
        isOrdered = true
        return order
    }

    /// Removes every token.
    public func removeAll() { rows.removeAll(); isOrdered = true }

    /// Position of token i.
    @inline(__always) public func position(_ i: Int) -> Int { Int(positions[i]) }
}
