/// KIVI's storage format (jy-yuan/KIVI; `QuantizationSpec`): the oldest tokens as packed codes
/// (`QuantizedStore`: token indices [0, codes.count)), the newest as Float32 rows after them. At
/// every step end, after retention (scorers saw Float32 keys), while at least R + G tokens are
/// Float32 the oldest G of them become one key group, so the newest R to R + G - 1 stay Float32.
/// Decode attention reads the codes (`QuantizedAttention`); a prefill over the store reads a
/// restored Float32 copy.
public final class QuantizedRows: PrefixedRows {
    public let codes: QuantizedStore
    /// The newest tokens, as float rows of the cache's `KVDType`.
    public let residual: any ElementRows

    public init(spec: QuantizationSpec, headDim: Int, initialCapacity: Int = 64, dtype: KVDType = .f32) {
        codes = QuantizedStore(spec: spec, headDim: headDim)
        residual = dtype.makeRows(headDim: headDim, initialCapacity: initialCapacity)
    }

    var prefixCount: Int { codes.count }
    func prefixKey(_ i: Int, into out: UnsafeMutablePointer<Float>) { codes.dequantizeKey(i, into: out) }
    func prefixValue(_ i: Int, into out: UnsafeMutablePointer<Float>) { codes.dequantizeValue(i, into: out) }
    func retainPrefix(_ indices: [Int]) { codes.retain(indices) }

    /// Codes + scales + zero points, and the Float32 rows.
    public var payloadBytes: Int { residual.payloadBytes + codes.payloadBytes }
    /// Per-group token counts.
    public var metadataBytes: Int { codes.metadataBytes }
    public var allocatedBytes: Int { residual.allocatedBytes + codes.allocatedBytes }

    public func removeAll() { residual.removeAll(); codes.removeAll() }

    /// Moves full groups of the oldest float rows to codes (indices do not change); 16-bit rows are
    /// quantized from their stored (rounded) values.
    public func endStep() {
        let g = codes.spec.groupSize
        var moved = 0
        while residual.count - moved >= codes.spec.residual + g {
            residual.withFloat32(moved..<(moved + g)) { codes.appendGroup(keys: $0, values: $1, rows: g) }
            moved += g
        }
        residual.dropFirst(moved)
    }

    public func decode(q: UnsafePointer<Float>, groups g: Int, indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        if codes.count == 0 { return residual.decode(q: q, groups: g, indices: indices, scale: scale, probs: probs, out: out) }
        return QuantizedAttention.decode(q: q, groups: g, rows: self, indices: indices, scale: scale, probs: probs, out: out)
    }
}
