/// Key and value bytes one decode kernel call read, and the tokens it attended.
public struct RowsRead: Equatable, Sendable {
    public var rows: Int
    public var keyBytes: Int
    public var valueBytes: Int
    public init(rows: Int, keyBytes: Int, valueBytes: Int) { self.rows = rows; self.keyBytes = keyBytes; self.valueBytes = valueBytes }
}

/// The keys and values of one (layer, KV head), in a storage format: float rows (`ElementRows`:
/// `Float32Rows`, the default, or `Float16Rows` / `BFloat16Rows` under `kv_dtype`), KIVI codes with
/// a float residual (`QuantizedRows`), MiniCache's merged rows (`MergedRows`). The store
/// (`HeadStore`) keeps the tokens' positions; the rows keep K/V in their format, give them back as
/// Float32, run the decode kernel over their own format and measure their bytes. A new format is
/// one new type and one line where the layout picks it (`StorageLayout.makeStores`). Token i is
/// index i everywhere; formats that keep a compact prefix (codes, merged tokens) index it first,
/// the float rows after it.
public protocol KVRows: AnyObject {
    var headDim: Int { get }                 // d
    var count: Int { get }                   // T, tokens held
    /// Ensures room for `n` tokens.
    func reserve(_ n: Int)
    /// Appends one token: key and value [d], Float32 (post-RoPE).
    func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>)
    /// Keeps the tokens at `indices` (strictly increasing), in their order.
    func retain(_ indices: [Int])
    /// Moves the last token into slot `i` (an O(d) eviction during decoding) and drops it from the
    /// end; false when the format keeps its tokens in order (the store compacts instead).
    func moveLast(into i: Int) -> Bool
    /// New index i holds the token at old index order[i] (the store restoring position order).
    func reorder(_ order: [Int])
    func removeAll()
    /// At a step end, after retention: the format's own housekeeping (KIVI: full groups of older
    /// tokens become codes). Indices do not change.
    func endStep()
    /// Key of token i as Float32. out: [d]
    func key(_ i: Int, into out: UnsafeMutablePointer<Float>)
    /// Value of token i as Float32. out: [d]
    func value(_ i: Int, into out: UnsafeMutablePointer<Float>)
    /// Float32 keys and values of the tokens in `range`, each [range.count, d] contiguous: the rows
    /// themselves where the format holds them as Float32, a restored copy otherwise.
    func withFloat32<R>(_ range: Range<Int>, _ body: (_ keys: UnsafePointer<Float>, _ values: UnsafePointer<Float>) throws -> R) rethrows -> R
    /// Changes token i's key in place (position shift re-rotates stored keys); formats that cannot trap.
    func updateKey(_ i: Int, _ body: (UnsafeMutablePointer<Float>) -> Void)
    /// One decode step for the g query heads of this KV head over the tokens at `indices` (nil =
    /// all, increasing), reading the format itself (never a restored copy).
    /// - q: [g, d] queries (post-RoPE); probs: [g, n] receives the probabilities; out: [g, d]
    func decode(q: UnsafePointer<Float>, groups g: Int, indices: UnsafeBufferPointer<Int32>?, scale: Float,
                probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead
    /// K/V payload held (what "KV bytes stored" means): rows, codes, scales, zero points, norms.
    var payloadBytes: Int { get }
    /// Bookkeeping held beside the payload (key-group token counts, merged-row indices).
    var metadataBytes: Int { get }
    /// Bytes allocated, held or not.
    var allocatedBytes: Int { get }
}

/// A compact prefix (codes, merged tokens) followed by float rows in the cache's `KVDType`: what KIVI
/// and MiniCache share. Token i < prefixCount is in the prefix; token i >= prefixCount is residual
/// row i - prefixCount.
protocol PrefixedRows: KVRows {
    var prefixCount: Int { get }
    var residual: any ElementRows { get }
    func prefixKey(_ i: Int, into out: UnsafeMutablePointer<Float>)
    func prefixValue(_ i: Int, into out: UnsafeMutablePointer<Float>)
    func retainPrefix(_ indices: [Int])
}

extension PrefixedRows {
    public var headDim: Int { residual.headDim }
    public var count: Int { prefixCount + residual.count }
    public func reserve(_ n: Int) { residual.reserve(n - prefixCount) }
    public func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>) { residual.append(key: key, value: value) }

    /// The prefix keeps its entries, the Float32 rows compact after them; order is kept.
    public func retain(_ indices: [Int]) {
        let p = prefixCount
        let split = indices.firstIndex { $0 >= p } ?? indices.count
        var last = -1
        for i in indices {
            precondition(i > last && i < count, "retain: indices must be increasing and in range")
            last = i
        }
        retainPrefix(Array(indices[..<split]))
        residual.retain(indices[split...].map { $0 - p })
    }

    /// Prefix tokens cannot take a Float32 row's slot.
    public func moveLast(into i: Int) -> Bool { false }
    public func reorder(_ order: [Int]) {
        precondition(order == Array(0..<count), "rows with a compact prefix stay in order")
    }

    public func key(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        if i < prefixCount { prefixKey(i, into: out) } else { residual.key(i - prefixCount, into: out) }
    }
    public func value(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        if i < prefixCount { prefixValue(i, into: out) } else { residual.value(i - prefixCount, into: out) }
    }

    public func withFloat32<R>(_ range: Range<Int>, _ body: (UnsafePointer<Float>, UnsafePointer<Float>) throws -> R) rethrows -> R {
        let p = prefixCount
        if range.lowerBound >= p { return try residual.withFloat32((range.lowerBound - p)..<(range.upperBound - p), body) }
        let d = headDim, n = range.count
        let k = UnsafeMutablePointer<Float>.allocate(capacity: max(n * d, 1)), v = UnsafeMutablePointer<Float>.allocate(capacity: max(n * d, 1))
        defer { k.deallocate(); v.deallocate() }
        for (r, i) in range.enumerated() { key(i, into: k + r * d); value(i, into: v + r * d) }
        return try body(k, v)
    }

    public func updateKey(_ i: Int, _ body: (UnsafeMutablePointer<Float>) -> Void) {
        precondition(i >= prefixCount, "a key held in a compact prefix cannot be changed in place")
        residual.updateKey(i - prefixCount, body)
    }
}
