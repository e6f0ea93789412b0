import CPrefetch
import Foundation
import KVTensor

/// Exact softmax attention kernels over a `HeadStore` (Float32 arithmetic over the stored elements).
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
        // Float32 rows are read in place; 16-bit rows and compact formats (KIVI codes, merged
        // tokens) as a Float32 copy of one key block at a time (BLAS-sized tiles).
        causal(q: q, ldq: ldq, rows: rows, block: { range, body in store.rows.withFloat32(range) { body($0, $1) } },
               d: store.headDim, visible: visible, scale: scale, out: out, ldo: ldo)
    }

    /// The same over key and value rows [visible.last, d] read block by block: `block(range, body)`
    /// calls body with the Float32 keys and values of the rows in `range`, each [range.count, d].
    static func causal(q: UnsafePointer<Float>, ldq: Int, rows: Int,
                       block: (Range<Int>, (UnsafePointer<Float>, UnsafePointer<Float>) -> Void) -> Void, d: Int,
                       visible: [Int], scale: Float, out: UnsafeMutablePointer<Float>, ldo: Int) {
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
                block(k0..<k1) { keys, values in
                BLAS.gemmNT(m: nq, n: nk, k: d, alpha: scale, a: q + q0 * ldq, lda: ldq,
                            b: keys, ldb: d, c: s, ldc: bk)
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
                    let sum = expShiftedSum(row, count: seen, shift: mNew)
                    for j in seen..<nk { row[j] = 0 }
                    l[r] = l[r] * alpha + sum
                    m[r] = mNew
                    if alpha != 1 { let a = acc + r * d; for t in 0..<d { a[t] *= alpha } }
                }
                BLAS.gemmNN(m: nq, n: d, k: nk, a: s, lda: bk, b: values, ldb: d,
                            beta: 1, c: acc, ldc: d)
                }
                k0 = k1
            }
            for r in 0..<nq {
                let inv = l[r] > 0 ? 1 / l[r] : 0, o = out + (q0 + r) * ldo, a = acc + r * d
                for t in 0..<d { o[t] = a[t] * inv }
            }
            q0 = q1
        }
    }

    /// One decode step for the g query heads of one KV head over `store`'s rows, in their format
    /// (`KVRows.decode`). Returns the number of tokens attended.
    @discardableResult
    public static func decode(q: UnsafePointer<Float>, groups g: Int, store: HeadStore,
                              indices: UnsafeBufferPointer<Int32>?, scale: Float,
                              probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> Int {
        store.rows.decode(q: q, groups: g, indices: indices, scale: scale, probs: probs, out: out).rows
    }

    /// Gathered rows are prefetched this many rows ahead of use (rolling, four rows at a time) into
    /// every cache level...
    static let prefetchDistance = 16
    /// ...and, further ahead, this many bytes of rows (at least 2 x `prefetchDistance` rows) into the
    /// outer caches only: the two-level prefetch of the gathered path (see `run`).
    static let farPrefetchBytes = 16 << 10

    /// Rows ahead of use that the gathered path prefetches into the outer caches, for rows of d elements.
    @inline(__always)
    static func farPrefetchRows<E: KVElement>(_: E.Type, d: Int) -> Int {
        max(2 * prefetchDistance, farPrefetchBytes / max(d * MemoryLayout<E>.stride, 1))
    }
    /// Dense key rows are prefetched this many rows ahead; dense value blocks this many rows ahead.
    static let denseKeyAhead = 16
    static let denseValueAhead = 16
    /// Dense value rows are added to the outputs in blocks of this many rows (outputs held in registers).
    static let valueBlock = 8

    /// The decode kernel of float rows (`ElementRows.decode`): one step for the g query heads of one KV
    /// head, reading each key and value row once, in its element type (Float32, or 16-bit elements
    /// converted in registers as they are loaded; the arithmetic is Float32 either way).
    /// - q:     [g, d] queries (post-RoPE); keys, values: [rows, d] elements
    /// - probs: [g, n] receives the attention probabilities (n = number of attended rows)
    /// - out:   [g, d]
    ///
    /// Memory-bound by design: SIMD8 fused multiply-adds score a key row for four heads at a time
    /// (each key chunk loaded once for the four), a vectorised exp normalises, and value rows are
    /// added in blocks of eight with the four heads' output chunks held in registers. Every row is
    /// software-prefetched ahead of use (dense rows as one sequential run per value block; gathered
    /// rows — selection policies — row by row at two distances, so their cache misses overlap). Each
    /// row's score, and the order in which rows are added to the output, do not depend on which
    /// other rows are attended: attending every index gives exactly the dense result.
    ///
    /// Key pass: each row's scores for the g heads (scaled) into probs[h, j]. Dense rows stream row
    /// by row with each row `denseKeyAhead` rows ahead software-prefetched; gathered rows go four
    /// at a time (independent misses overlap) with a two-level rolling prefetch: the rows
    /// `prefetchDistance` ahead into every cache level (PREFETCHT0), and the rows `farPrefetchBytes`
    /// ahead (16 KB: 64 rows at d 64) into the outer caches only (PREFETCHT2). The far hint starts
    /// the DRAM misses without holding a first-level miss buffer each, which the near prefetches
    /// alone exhaust (the dense path has the hardware stream prefetcher for this; gathered Quest
    /// pages and Loki rows do not: docs/selection.md, "Two-level prefetch"). Per row the arithmetic
    /// is the same either way. Softmax: max and e^(s - max) per head, then 1/sum.
    /// Value pass, dense: blocks of `valueBlock` rows, each block's probabilities normalised just
    /// before its rows are added, with the outputs held in registers over the block (one sequential
    /// prefetch run per block, `denseValueAhead` rows ahead). Gathered: probabilities normalised in
    /// one pass, rows four at a time with the same two-level rolling prefetch (blocks of eight measured slower on
    /// random rows). Either way each output element receives the rows in order through the same
    /// fused multiply-adds, so the results are those of adding row by row.
    @inline(__always)
    static func run<R: RowMap, E: KVElement>(_ rows: R, q: UnsafePointer<Float>, g: Int, keys: UnsafePointer<E>, values: UnsafePointer<E>,
                               d: Int, n: Int, scale: Float, probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let ahead = prefetchDistance, far = farPrefetchRows(E.self, d: d)
        if R.gathers {
            for t in 0..<min(ahead, n) { prefetchRow(keys + rows.row(t) * d, d) }
            for t in min(ahead, n)..<min(far, n) { prefetchRowFar(keys + rows.row(t) * d, d) }
            var j = 0
            while j + 4 <= n {
                for t in min(j + ahead, n)..<min(j + ahead + 4, n) { prefetchRow(keys + rows.row(t) * d, d) }
                for t in min(j + far, n)..<min(j + far + 4, n) { prefetchRowFar(keys + rows.row(t) * d, d) }
                scoreFour(keys + rows.row(j) * d, keys + rows.row(j + 1) * d, keys + rows.row(j + 2) * d,
                          keys + rows.row(j + 3) * d, q: q, g: g, d: d, scale: scale, probs: probs + j, stride: n)
                j += 4
            }
            while j < n { scoreOne(keys + rows.row(j) * d, q: q, g: g, d: d, scale: scale, probs: probs + j, stride: n); j += 1 }
        } else {
            let m = max(n - denseKeyAhead, 0)
            for j in 0..<m {
                prefetchRow(keys + (j + denseKeyAhead) * d, d)
                scoreOne(keys + j * d, q: q, g: g, d: d, scale: scale, probs: probs + j, stride: n)
            }
            for j in m..<n { scoreOne(keys + j * d, q: q, g: g, d: d, scale: scale, probs: probs + j, stride: n) }
        }
        let B = valueBlock
        withUnsafeTemporaryAllocation(of: Float.self, capacity: g) { invBuf in
        withUnsafeTemporaryAllocation(of: UnsafePointer<E>.self, capacity: B) { ptrBuf in
            let inv = invBuf.baseAddress!, ptrs = ptrBuf.baseAddress!
            for h in 0..<g { inv[h] = 1 / expShiftedToMax(probs + h * n, count: n) }
            if R.gathers {
                // Gathered rows: normalise, then rows four at a time with the rows `ahead` further
                // on prefetched (rolling), each output chunk kept in a register over the four.
                for h in 0..<g {
                    let p = probs + h * n, s = inv[h]
                    var r = 0
                    while r + 8 <= n { UnsafeMutableRawPointer(p + r).storeBytes(of: load(p, r) * s, as: V8.self); r += 8 }
                    while r < n { p[r] *= s; r += 1 }
                }
                for t in 0..<min(ahead, n) { prefetchRow(values + rows.row(t) * d, d) }
                for t in min(ahead, n)..<min(far, n) { prefetchRowFar(values + rows.row(t) * d, d) }
                var j = 0
                while j + 4 <= n {
                    for t in min(j + ahead, n)..<min(j + ahead + 4, n) { prefetchRow(values + rows.row(t) * d, d) }
                    for t in min(j + far, n)..<min(j + far + 4, n) { prefetchRowFar(values + rows.row(t) * d, d) }
                    accumulateFour(values + rows.row(j) * d, values + rows.row(j + 1) * d, values + rows.row(j + 2) * d,
                                   values + rows.row(j + 3) * d, probs: probs + j, stride: n, g: g, d: d, out: out)
                    j += 4
                }
                while j < n { accumulateOne(values + rows.row(j) * d, probs: probs + j, stride: n, g: g, d: d, out: out); j += 1 }
                return
            }
            let vAhead = denseValueAhead
            for t in 0..<min(vAhead, n) { prefetchRow(values + rows.row(t) * d, d) }
            var j0 = 0
            while j0 < n {
                let cnt = min(B, n - j0)
                // One sequential run over the block's bytes `vAhead` rows ahead (cheaper than per row).
                let a = UnsafeRawPointer(values + (j0 + vAhead) * d), e = min(cnt, max(n - j0 - vAhead, 0)) * d * MemoryLayout<E>.stride
                var i = 0
                while i < e { kv_prefetch(a + i); i += 64 }
                for r in 0..<cnt { ptrs[r] = UnsafePointer(values + rows.row(j0 + r) * d) }
                for h in 0..<g {
                    let p = probs + h * n + j0, s = inv[h]
                    var r = 0
                    while r + 8 <= cnt { UnsafeMutableRawPointer(p + r).storeBytes(of: load(p, r) * s, as: V8.self); r += 8 }
                    while r < cnt { p[r] *= s; r += 1 }
                }
                accumulateBlock(ptrs, count: cnt, probs: probs + j0, stride: n, g: g, d: d, out: out)
                j0 += cnt
            }
        }
        }
    }
}
