import KVTensor

/// Decode attention over a store holding MiniCache-merged tokens, reading the merged
/// representation (never a restored copy): for merged token i with shared row r,
///   score = scale * keyNorm_i * (q . keyDir_r),   out += p * valueNorm_i * valueDir_r,
/// Float32 rows as usual. Per merged token it reads a direction row and a norm for K and for V
/// plus the row index, which it returns with the rest of the bytes read.
enum MergedAttention {
    /// `KVRows.decode` of `MergedRows`.
    static func decode(q: UnsafePointer<Float>, groups g: Int, rows: MergedRows,
                       indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        // The unmerged rows' element type, statically (a kernel specialised per element).
        switch rows.residual {
        case let r as Float16Rows: return decode(q: q, groups: g, rows: rows, residual: r, indices: indices, scale: scale, probs: probs, out: out)
        case let r as BFloat16Rows: return decode(q: q, groups: g, rows: rows, residual: r, indices: indices, scale: scale, probs: probs, out: out)
        default: return decode(q: q, groups: g, rows: rows, residual: rows.residual as! Float32Rows, indices: indices, scale: scale, probs: probs, out: out)
        }
    }

    /// The same with the unmerged rows' type known: Float32 rows are read in place, 16-bit rows
    /// widened one row at a time into a [d] scratch row (L1) as they are read.
    static func decode<F: ElementRows>(q: UnsafePointer<Float>, groups g: Int, rows: MergedRows, residual: F,
                                       indices: UnsafeBufferPointer<Int32>?, scale: Float,
                                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        let m = rows.merged, d = rows.headDim, n = indices?.count ?? rows.count, mc = m.count
        out.initialize(repeating: 0, count: g * d)
        guard n > 0 else { return RowsRead(rows: 0, keyBytes: 0, valueBytes: 0) }
        let idx = indices?.baseAddress
        @inline(__always) func row(_ j: Int) -> Int { idx.map { Int($0[j]) } ?? j }
        let f = MemoryLayout<Float>.stride, e = MemoryLayout<F.Element>.stride
        var mergedRows = 0
        let keys = residual.keys, values = residual.values     // float token i is residual row i - mc
        let wide = UnsafeMutablePointer<Float>.allocate(capacity: d)
        defer { wide.deallocate() }
        @inline(__always) func fp(_ p: UnsafeMutablePointer<F.Element>) -> UnsafePointer<Float> {
            if F.Element.self == Float.self { return UnsafeRawPointer(p).assumingMemoryBound(to: Float.self) }
            F.widen(p, into: wide, count: d)
            return UnsafePointer(wide)
        }
        m.row.withUnsafeBufferPointer { rb in
            let dirRow = rb.baseAddress
            m.keyNorm.withUnsafeBufferPointer { kn in
                m.shared.keyDirs.withUnsafeBufferPointer { kd in
                    for j in 0..<n {
                        let i = row(j)
                        let merged = i < mc
                        let k = merged ? kd.baseAddress! + Int(dirRow![i]) * d : fp(keys + (i - mc) * d)
                        let s = merged ? scale * kn[i] : scale
                        if merged { mergedRows += 1 }
                        for h in 0..<g { probs[h * n + j] = s * Ops.dot(q + h * d, k, d) }
                    }
                }
            }
            for h in 0..<g { Ops.softmax(probs + h * n, count: n) }
            m.valueNorm.withUnsafeBufferPointer { vn in
                m.shared.valueDirs.withUnsafeBufferPointer { vd in
                    for j in 0..<n {
                        let i = row(j)
                        let merged = i < mc
                        let v = merged ? vd.baseAddress! + Int(dirRow![i]) * d : fp(values + (i - mc) * d)
                        let s: Float = merged ? vn[i] : 1
                        for h in 0..<g { Ops.axpy(s * probs[h * n + j], v, out + h * d, d) }
                    }
                }
            }
        }
        // Merged rows: direction + norm (+ the row index, with the keys); float rows: d elements.
        let fpBytes = (n - mergedRows) * d * e
        return RowsRead(rows: n, keyBytes: fpBytes + mergedRows * (d * f + f + MemoryLayout<Int32>.stride),
                        valueBytes: fpBytes + mergedRows * (d * f + f))
    }
}
