import Foundation
import KVTensor

/// Exact softmax attention kernels over a `HeadStore`, in its storage precision (Float32).
public enum Attention {
    /// Query/key block sizes of the chunked prefill kernel: scratch is queryBlock x keyBlock floats,
    /// so prefill memory grows linearly with the prompt ("Self-attention Does Not Need O(n^2) Memory").
    public static let queryBlock = 256
    public static let keyBlock = 512

    /// For each query position, how many store tokens it may see: those at positions <= its own
    /// (stores keep increasing positions, so this is a prefix even after eviction or sharing).
    public static func visibleCounts(store: HeadStore, positions: [Int]) -> [Int] {
        positions.map { p in
            var lo = 0, hi = store.count
            while lo < hi { let mid = (lo + hi) / 2; if store.position(mid) <= p { lo = mid + 1 } else { hi = mid } }
            return lo
        }
    }

    /// Causal attention of `rows` queries against the first tokens of `store`.
    /// Query i sees store tokens [0, visible[i]) (see `visibleCounts`); visible must be non-decreasing.
    /// - q:   [rows, ldq]  one query head's slice of the query rows (post-RoPE)
    /// - out: [rows, ldo]  the head's slice of the output rows
    public static func causal(q: UnsafePointer<Float>, ldq: Int, rows: Int, store: HeadStore, visible: [Int],
                              scale: Float, out: UnsafeMutablePointer<Float>, ldo: Int) {
        let d = store.headDim
        let bq = min(queryBlock, rows), bk = keyBlock
        let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)      // [bq, bk] scores / probs
        let acc = UnsafeMutablePointer<Float>.allocate(capacity: bq * d)      // [bq, d] unnormalised output
        var m = [Float](repeating: 0, count: bq), l = [Float](repeating: 0, count: bq)
        defer { s.deallocate(); acc.deallocate() }
        var q0 = 0
        while q0 < rows {
            let q1 = min(q0 + bq, rows), nq = q1 - q0
            for r in 0..<nq { m[r] = -.infinity; l[r] = 0 }
            acc.initialize(repeating: 0, count: nq * d)
            let limit = visible[q1 - 1]                                    // keys any row of the block sees
            var k0 = 0
            while k0 < limit {
                let k1 = min(k0 + bk, limit), nk = k1 - k0
                BLAS.gemmNT(m: nq, n: nk, k: d, alpha: scale, a: q + q0 * ldq, lda: ldq,
                            b: store.keys + k0 * d, ldb: d, c: s, ldc: bk)
                for r in 0..<nq {
                    let row = s + r * bk
                    let seen = min(max(visible[q0 + r] - k0, 0), nk)          // columns this row sees
                    var mr = -Float.infinity
                    for j in 0..<seen where row[j] > mr { mr = row[j] }
                    if seen == 0 || mr == -.infinity {
                        for j in 0..<nk { row[j] = 0 }
                        continue
                    }
                    let mNew = max(m[r], mr)
                    let alpha = exp(m[r] - mNew)
                    var sum: Float = 0
                    for j in 0..<seen { let e = exp(row[j] - mNew); row[j] = e; sum += e }
                    for j in seen..<nk { row[j] = 0 }
                    l[r] = l[r] * alpha + sum
                    m[r] = mNew
                    if alpha != 1 { let a = acc + r * d; for t in 0..<d { a[t] *= alpha } }
                }
                BLAS.gemmNN(m: nq, n: d, k: nk, a: s, lda: bk, b: store.values + k0 * d, ldb: d,
                            beta: 1, c: acc, ldc: d)
                k0 = k1
            }
            for r in 0..<nq {
                let inv = l[r] > 0 ? 1 / l[r] : 0, o = out + (q0 + r) * ldo, a = acc + r * d
                for t in 0..<d { o[t] = a[t] * inv }
            }
            q0 = q1
        }
    }

    /// One decode step for the g query heads of one KV head, reading each key and value once.
    /// - q:       [g, d]   queries (post-RoPE)
    /// - indices: the store indices to attend over (nil = all tokens), increasing
    /// - probs:   [g, n]   receives the attention probabilities (n = number of attended tokens)
    /// - out:     [g, d]
    /// Returns the number of token rows read (each row = one key + one value).
    @discardableResult
    public static func decode(q: UnsafePointer<Float>, groups g: Int, store: HeadStore,
                              indices: UnsafeBufferPointer<Int32>?, scale: Float,
                              probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> Int {
        let d = store.headDim
        let n = indices?.count ?? store.count
        let keys = store.keys, values = store.values
        for j in 0..<n {
            let row = indices.map { Int($0[j]) } ?? j
            let k = keys + row * d
            for h in 0..<g { probs[h * n + j] = Ops.dot(q + h * d, k, d) * scale }
        }
        for h in 0..<g { Ops.softmax(probs + h * n, count: n) }
        out.initialize(repeating: 0, count: g * d)
        for j in 0..<n {
            let row = indices.map { Int($0[j]) } ?? j
            let v = values + row * d
            for h in 0..<g { Ops.axpy(probs[h * n + j], v, out + h * d, d) }
        }
        return n
    }
}
