/// MiniCache's storage format (arXiv 2405.14366): the oldest tokens merged with the paired layer's
/// (token indices [0, merged.count): this layer's norms and a row of the pair's shared directions,
/// `MergedSection`), the others Float32 rows after them. Tokens move into the merged prefix when
/// the cache merges the pair (`LayerMerge`, `HeadStore.absorbMerged`). Decode attention reads the
/// merged representation (`MergedAttention`); a prefill over the store reads a restored copy.
public final class MergedRows: PrefixedRows {
    public let merged: MergedSection
    /// The unmerged tokens, as float rows of the cache's `KVDType`.
    public let residual: any ElementRows

    /// Rows whose merged tokens' directions live in `shared` (the pair's, one per KV head).
    public init(shared: MergedDirections, headDim: Int, initialCapacity: Int = 64, dtype: KVDType = .f32) {
        merged = MergedSection(shared: shared)
        residual = dtype.makeRows(headDim: headDim, initialCapacity: initialCapacity)
    }

    var prefixCount: Int { merged.count }
    func prefixKey(_ i: Int, into out: UnsafeMutablePointer<Float>) { merged.key(i, into: out) }
    func prefixValue(_ i: Int, into out: UnsafeMutablePointer<Float>) { merged.value(i, into: out) }
    func retainPrefix(_ indices: [Int]) { merged.retain(indices) }

    /// Float32 rows, and this store's norms plus half the pair's shared directions.
    public var payloadBytes: Int { residual.payloadBytes + merged.payloadBytes }
    /// The direction row index per merged token.
    public var metadataBytes: Int { merged.metadataBytes }
    public var allocatedBytes: Int { residual.allocatedBytes + merged.allocatedBytes }

    public func removeAll() { residual.removeAll(); merged.removeAll() }
    public func endStep() {}

    public func decode(q: UnsafePointer<Float>, groups g: Int, indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        if merged.count == 0 { return residual.decode(q: q, groups: g, indices: indices, scale: scale, probs: probs, out: out) }
        return MergedAttention.decode(q: q, groups: g, rows: self, indices: indices, scale: scale, probs: probs, out: out)
    }

    /// Moves the Float32 tokens at indices `moved` (increasing, >= merged.count) into the merged
    /// prefix, in that order, with direction rows `rows` and this layer's norms; the positions are
    /// the store's to move (`HeadStore.absorbMerged`).
    func absorb(_ moved: [Int], rows: [Int32], keyNorms: [Float], valueNorms: [Float]) {
        let first = merged.count
        var isMoved = [Bool](repeating: false, count: residual.count)
        for i in moved { isMoved[i - first] = true }
        residual.retain((0..<residual.count).filter { !isMoved[$0] })
        for j in moved.indices { merged.append(row: rows[j], keyNorm: keyNorms[j], valueNorm: valueNorms[j]) }
    }
}
