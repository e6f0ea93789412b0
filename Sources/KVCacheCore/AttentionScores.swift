import Foundation
import KVTensor

/// Attention probabilities for policies that score tokens by the attention they receive
/// (H2O, SnapKV, TOVA, ObservedAttention). Same arithmetic as the kernels in `Attention`.
extension Attention {
    /// Softmax of one query over the first `visible` store tokens.
    /// - q: [d]; out: [visible]
    public static func probabilities(q: UnsafePointer<Float>, store: HeadStore, visible: Int, scale: Float,
                                     into out: UnsafeMutablePointer<Float>) {
        let d = store.headDim
        store.rows.withFloat32(0..<visible) { keys, _ in
            for j in 0..<visible { out[j] = Ops.dot(q, keys + j * d, d) * scale }
        }
        Ops.softmax(out, count: visible)
    }

    /// Adds, for every store token j, the attention probability each query row gives it:
    /// colSums[j] += sum_i softmax_i(j) over rows i with j < visible[i]. Blocked, two passes
    /// (row log-sum-exp, then normalised probabilities), O(rows) extra memory.
    /// - q: [rows, ldq] one query head; colSums: [store.count]
    public static func addColumnSums(q: UnsafePointer<Float>, ldq: Int, rows: Int, store: HeadStore, visible: [Int],
                                     scale: Float, into colSums: UnsafeMutablePointer<Float>) {
        guard rows > 0 else { return }
        // Key blocks as Float32 one at a time (in place for Float32 rows), as `Attention.causal` reads them.
        addColumnSums(q: q, ldq: ldq, rows: rows, block: { range, body in store.rows.withFloat32(range) { k, _ in body(k) } },
                      d: store.headDim, visible: visible, scale: scale, into: colSums)
    }

    /// The same over key rows [visible.last, d], read block by block (`block(range, body)`: body gets
    /// the Float32 keys [range.count, d] of the rows in `range`).
    static func addColumnSums(q: UnsafePointer<Float>, ldq: Int, rows: Int, block: (Range<Int>, (UnsafePointer<Float>) -> Void) -> Void,
                              d: Int, visible: [Int], scale: Float, into colSums: UnsafeMutablePointer<Float>) {
        let bq = min(queryBlock, rows), bk = keyBlock
        let s = UnsafeMutablePointer<Float>.allocate(capacity: bq * bk)
        defer { s.deallocate() }
        var m = [Float](repeating: 0, count: bq), l = [Float](repeating: 0, count: bq)
        var q0 = 0
        while q0 < rows {
            let q1 = min(q0 + bq, rows), nq = q1 - q0, limit = visible[q1 - 1]
            for r in 0..<nq { m[r] = -.infinity; l[r] = 0 }
            for pass in 0..<2 {
                var k0 = 0
                while k0 < limit {
                    let k1 = min(k0 + bk, limit), nk = k1 - k0
                    block(k0..<k1) { keys in
                        BLAS.gemmNT(m: nq, n: nk, k: d, alpha: scale, a: q + q0 * ldq, lda: ldq, b: keys, ldb: d, c: s, ldc: bk)
                    }
                    for r in 0..<nq {
                        let row = s + r * bk
                        let seen = min(max(visible[q0 + r] - k0, 0), nk)
                        if seen == 0 { continue }
                        if pass == 0 {
                            var mr = -Float.infinity
                            for j in 0..<seen where row[j] > mr { mr = row[j] }
                            let mNew = max(m[r], mr)
                            var sum: Float = 0
                            for j in 0..<seen { sum += exp(row[j] - mNew) }
                            l[r] = l[r] * exp(m[r] - mNew) + sum
                            m[r] = mNew
                        } else {
                            let lse = m[r] + log(l[r])
                            let c = colSums + k0
                            for j in 0..<seen { c[j] += exp(row[j] - lse) }
                        }
                    }
                    k0 = k1
                }
            }
            q0 = q1
        }
    }
}
