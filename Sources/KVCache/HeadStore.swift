/// The storage of one (layer, KV head): the cache's unit of memory.
///
/// Tokens are kept in insertion order with their original positions, so evicting a
/// token compacts the arrays and really frees its bytes (capacity shrinks on demand).
public final class HeadStore {
    public let headDim: Int                               // d
    public private(set) var count: Int = 0                // T, tokens held
    public private(set) var capacity: Int = 0
    public private(set) var keys: UnsafeMutablePointer<Float>      // [capacity, d], post-RoPE
    public private(set) var values: UnsafeMutablePointer<Float>    // [capacity, d]
    public private(set) var positions: UnsafeMutablePointer<Int32> // [capacity], original positions
    /// Whether positions increase with the index. Single evictions during decoding move the last
    /// token into the hole (O(d) instead of shifting the whole window); the cache restores the
    /// order before a prefill needs it for causal masking.
    public private(set) var isOrdered = true

    public init(headDim: Int, initialCapacity: Int = 64) {
        self.headDim = headDim
        let cap = max(initialCapacity, 1)
        keys = .allocate(capacity: cap * headDim)
        values = .allocate(capacity: cap * headDim)
        positions = .allocate(capacity: cap)
        capacity = cap
    }

    deinit {
        keys.deallocate(); values.deallocate(); positions.deallocate()
    }

    /// Bytes of key and value payload held (what "KV bytes stored" means).
    public var payloadBytes: Int { count * headDim * MemoryLayout<Float>.stride * 2 }
    /// Bytes of bookkeeping held per token (original positions).
    public var metadataBytes: Int { count * MemoryLayout<Int32>.stride }
    /// Bytes allocated, held or not.
    public var allocatedBytes: Int { capacity * (headDim * MemoryLayout<Float>.stride * 2 + MemoryLayout<Int32>.stride) }

    /// Ensures room for `n` tokens (geometric growth).
    public func reserve(_ n: Int) {
        guard n > capacity else { return }
        resize(to: max(n, capacity * 2))
    }

    private func resize(to newCap: Int) {
        let nk = UnsafeMutablePointer<Float>.allocate(capacity: newCap * headDim)
        let nv = UnsafeMutablePointer<Float>.allocate(capacity: newCap * headDim)
        let np = UnsafeMutablePointer<Int32>.allocate(capacity: newCap)
        nk.update(from: keys, count: count * headDim)
        nv.update(from: values, count: count * headDim)
        np.update(from: positions, count: count)
        keys.deallocate(); values.deallocate(); positions.deallocate()
        keys = nk; values = nv; positions = np; capacity = newCap
    }

    /// Appends one token: key [d], value [d] read with the given strides of 1.
    @inline(__always)
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>, position: Int) {
        reserve(count + 1)
        (keys + count * headDim).update(from: key, count: headDim)
        (values + count * headDim).update(from: value, count: headDim)
        positions[count] = Int32(position)
        count += 1
    }

    /// Keeps only the tokens at `indices` (strictly increasing store indices), in their order.
    /// Shrinks the allocation when at most a quarter of it stays in use.
    public func retain(_ indices: [Int]) {
        precondition(indices.count <= count, "retain: more indices than tokens")
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

    /// Removes token `i` by moving the last token into its slot: O(d). Returns the mapping
    /// new index -> old index (what `CachePolicy.didRetain` receives).
    @discardableResult
    public func remove(at i: Int) -> [Int] {
        precondition(i >= 0 && i < count, "remove: index out of range")
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
    public func removeAll() { count = 0; isOrdered = true }

    /// Position of token i.
    @inline(__always) public func position(_ i: Int) -> Int { Int(positions[i]) }
}
