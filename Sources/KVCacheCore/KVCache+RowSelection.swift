import Foundation
import KVTensor

/// Per-query-row selection (`CachePolicy.selectsRows` / `selectRows`): a policy narrows the keys each
/// query row reads, per query head or per KV group, in prefill and/or decode; the cache then attends
/// exactly over each row's list with the decode kernel (one row at a time). Bytes read are metered
/// per query row and KV head as the rows its group attends (the union of the group's lists; all
/// visible rows when a block stays dense), so prefill reads compare with the dense prefill's.
extension KVCache {
    /// Prefill attention of one layer step under row selection, in blocks of `Attention.queryBlock` rows.
    func selectedPrefill(_ step: LayerStep, scale: Float, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, g = shape.groupSize, hq = shape.queryHeads, rows = step.rows
        for (h, st) in step.stores.enumerated() {
            let visible = Attention.visibleCounts(store: st, positions: step.positions)
            ensureScratch(g * max(st.count, 1))
            let all = (0..<Int32(st.count)).map { $0 }                    // [T] the dense list
            var r0 = 0
            while r0 < rows {
                let r1 = min(r0 + Attention.queryBlock, rows), n = r1 - r0
                guard let sel = policy.selectRows(step, head: h, rows: r0..<r1, visible: visible) else {
                    meterPrefill(rowsRead: visible[r0..<r1].reduce(0, +))
                    for qh in h * g..<(h + 1) * g {
                        Attention.causal(q: step.queries + r0 * hq * d + qh * d, ldq: hq * d, rows: n, store: st,
                                         visible: Array(visible[r0..<r1]), scale: scale, out: output + r0 * hq * d + qh * d, ldo: hq * d)
                    }
                    r0 = r1
                    continue
                }
                precondition(sel.lists.count == (sel.perQueryHead ? g : 1) * n, "\(policy.name): selectRows returned \(sel.lists.count) lists for \(n) rows")
                for r in r0..<r1 {
                    let q = step.queries + r * hq * d + h * g * d, o = output + r * hq * d + h * g * d
                    if sel.perQueryHead {
                        let lists = (0..<g).map { sel.lists[$0 * n + r - r0] }
                        let (_, read) = Self.attendPerQueryHead(lists, q: q, groups: g, store: st, visible: visible[r], all: all,
                                                                scale: scale, probs: scratch[h], out: o)
                        meterPrefill(rowsRead: read.rows)
                    } else {
                        let list = sel.lists[r - r0]
                        Self.check(list, visible: visible[r], policy: policy.name)
                        Self.withList(list, visible: visible[r], all: all) { idx in
                            _ = Attention.decode(q: q, groups: g, store: st, indices: idx, scale: scale, probs: scratch[h], out: o)
                        }
                        meterPrefill(rowsRead: list?.count ?? visible[r])
                    }
                }
                r0 = r1
            }
        }
    }

    /// Logical prefill reads: `rowsRead` key rows and as many value rows of one KV head, in the
    /// cache's element type (`kvDType`).
    func meterPrefill(rowsRead: Int) {
        meter.keyBytes += rowsRead * shape.headDim * kvDType.bytes
        meter.valueBytes += rowsRead * shape.headDim * kvDType.bytes
    }

    /// One query row of g heads, each attending its own list (nil = the first `visible` tokens).
    /// Writes out [g, d] and probs [g, u] over the union of the lists (u = its size; zeros where a
    /// head did not select), which it returns (nil = every visible token) with what was read: u
    /// tokens, and the union's share of the bytes the g passes read (exact for Float32 rows).
    static func attendPerQueryHead(_ lists: [[Int32]?], q: UnsafePointer<Float>, groups g: Int, store: HeadStore,
                                   visible: Int? = nil, all: [Int32]? = nil, scale: Float,
                                   probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> ([Int32]?, RowsRead) {
        let d = store.headDim, v = visible ?? store.count
        let all = all ?? (0..<Int32(store.count)).map { $0 }
        for l in lists { check(l, visible: v, policy: "selectRows") }
        // Union of the lists, and each token's column in it.
        var union: [Int32]? = nil
        var column = [Int32](repeating: -1, count: v)
        if lists.allSatisfy({ $0 != nil }) {
            for l in lists { for i in l! { column[Int(i)] = 0 } }
            var u: [Int32] = []
            for i in 0..<v where column[i] == 0 { column[i] = Int32(u.count); u.append(Int32(i)) }
            union = u
        } else {
            for i in 0..<v { column[i] = Int32(i) }
        }
        let u = union?.count ?? v
        var own = [Float](repeating: 0, count: v)                     // [n_m] one head's probabilities
        probs.initialize(repeating: 0, count: g * u)
        var keyBytes = 0, valueBytes = 0, picked = 0
        for m in 0..<g {
            let n = lists[m]?.count ?? v
            withList(lists[m], visible: v, all: all) { idx in
                let read = own.withUnsafeMutableBufferPointer { ob in
                    store.rows.decode(q: q + m * d, groups: 1, indices: idx, scale: scale, probs: ob.baseAddress!, out: out + m * d)
                }
                keyBytes += read.keyBytes; valueBytes += read.valueBytes
                for j in 0..<n { probs[m * u + Int(column[Int(idx?[j] ?? Int32(j))])] = own[j] }
            }
            picked += n
        }
        let share = picked > 0 ? RowsRead(rows: u, keyBytes: keyBytes * u / picked, valueBytes: valueBytes * u / picked)
                               : RowsRead(rows: u, keyBytes: keyBytes, valueBytes: valueBytes)
        return (union, share)
    }

    /// Runs `body` with a list's indices, or the first `visible` indices when the list is nil (nil
    /// when that is the whole store: the kernel's dense path).
    static func withList(_ list: [Int32]?, visible: Int, all: [Int32], _ body: (UnsafeBufferPointer<Int32>?) -> Void) {
        if let list { list.withUnsafeBufferPointer { body($0) }; return }
        if visible >= all.count { body(nil); return }
        all.withUnsafeBufferPointer { body(UnsafeBufferPointer(rebasing: $0[0..<visible])) }
    }

    static func check(_ list: [Int32]?, visible: Int, policy: String) {
        guard let list, let last = list.last else { return }
        precondition(list[0] >= 0 && Int(last) < visible, "\(policy): selected a token the row may not see")
    }
}
