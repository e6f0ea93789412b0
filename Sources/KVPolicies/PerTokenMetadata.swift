// Support file, not a policy: per-token metadata bookkeeping shared by H2O, TOVA and Knorm
// (their papers and reference repositories are on their own files).
import KVCacheCore

/// Moves per-token policy metadata the way the store moved its tokens (`CachePolicy.didRetain`:
/// new index i holds old index kept[i]). The decode-time case (one token dropped, the last slot
/// moved into its place) is done in place without allocating.
@inline(__always)
func applyRetention<T>(_ values: inout [T], kept: [Int]) {
    if kept.count == values.count - 1 {
        var i = 0
        while i < kept.count && kept[i] == i { i += 1 }
        if i == kept.count || (kept[i] == values.count - 1 && (i + 1 == kept.count || kept[i + 1] == i + 1)) {
            if i < kept.count { values[i] = values[kept[i]] }
            values.removeLast()
            return
        }
    }
    values = kept.map { values[$0] }
}

/// Adds each of g probability rows [g, n] (over the attended indices, nil = 0..<n) into `into`.
@inline(__always)
func accumulate(_ probs: UnsafePointer<Float>, rows g: Int, count n: Int, indices: [Int32]?, scale: Float,
                into target: inout [Float]) {
    target.withUnsafeMutableBufferPointer { t in
        if let idx = indices {
            idx.withUnsafeBufferPointer { ix in
                for h in 0..<g { let row = probs + h * n; for j in 0..<n { t[Int(ix[j])] += row[j] * scale } }
            }
        } else {
            for h in 0..<g { let row = probs + h * n; for j in 0..<n { t[j] += row[j] * scale } }
        }
    }
}
