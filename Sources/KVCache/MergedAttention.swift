import KVTensor

/// Decode attention over a store holding MiniCache-merged tokens, reading the merged
/// representation (never a restored copy): for merged token i with shared row r,
///   score = scale * keyNorm_i * (q . keyDir_r),   out += p * valueNorm_i * valueDir_r,
/// Float32 rows as usual. Per merged token it reads a direction row and a norm for K and for V
/// plus the row index, which `store.lastReadBytes` records.
enum MergedAttention {
    /// Same contract as `Attention.decode`.
    static func decode(q: UnsafePointer<Float>, groups g: Int, store: HeadStore, merged m: MergedSection,
                       indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> Int {
        let d = store.headDim, n = indices?.count ?? store.count, mc = m.count
        out.initialize(repeating: 0, count: g * d)
        store.lastReadBytes = (0, 0)
        guard n > 0 else { return 0 }
        let idx = indices?.baseAddress
        @inline(__always) func row(_ j: Int) -> Int { idx.map { Int($0[j]) } ?? j }
        let f = MemoryLayout<Float>.stride
        var mergedRows = 0
        let keys = store.keys, values = store.values
        m.row.withUnsafeBufferPointer { rb in
            let dirRow = rb.baseAddress
            m.keyNorm.withUnsafeBufferPointer { kn in
                m.shared.keyDirs.withUnsafeBufferPointer { kd in
                    for j in 0..<n {
                        let i = row(j)
                        let merged = i < mc
                        let k = merged ? kd.baseAddress! + Int(dirRow![i]) * d : UnsafePointer(keys + i * d)
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
                        let v = merged ? vd.baseAddress! + Int(dirRow![i]) * d : UnsafePointer(values + i * d)
                        let s: Float = merged ? vn[i] : 1
                        for h in 0..<g { Ops.axpy(s * probs[h * n + j], v, out + h * d, d) }
                    }
                }
            }
        }
        // Merged rows: direction + norm (+ the row index, with the keys); Float32 rows: d floats.
        let fpBytes = (n - mergedRows) * d * f
        store.lastReadBytes = (fpBytes + mergedRows * (d * f + f + MemoryLayout<Int32>.stride), fpBytes + mergedRows * (d * f + f))
        return n
    }
}
