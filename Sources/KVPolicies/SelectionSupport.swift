// Shared pieces of the query-aware selection policies (Quest, Loki, oracle top-k): how many
// tokens to keep, how a GQA group chooses, SIMD row scoring and linear-time top-k.
import KVCache

/// How the query heads of a GQA group choose the tokens their KV head reads.
public enum SelectionGQA: String, Hashable, Sendable, CaseIterable {
    /// One choice per KV head from the scores summed over the group's g query heads. The kernel
    /// reads each chosen key/value once for the whole group, so bytes read honour the budget.
    /// The default of every selection policy.
    case kvGroup = "kv_group"
    /// Each query head chooses by its own scores; the group reads the union (up to g x the budget).
    case queryHead = "query_head"
}

/// A number of tokens: absolute, or a fraction of the tokens a selection chooses from.
public enum SelectionSize: Hashable, Sendable, CustomStringConvertible {
    case tokens(Int)
    case fraction(Double)

    /// Tokens kept out of `n`: min(count, n), a fraction rounds down as the references' int(f * n), at least 1.
    public func count(of n: Int) -> Int {
        switch self {
        case .tokens(let k): return min(k, n)
        case .fraction(let f): return min(n, max(1, Int(f * Double(n))))
        }
    }

    public var description: String {
        switch self { case .tokens(let k): return "\(k)"; case .fraction(let f): return "\(f)T" }
    }

    func validate(policy: String, field: String) throws {
        switch self {
        case .tokens(let k) where k < 1:
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a positive token count, got \(k)")
        case .fraction(let f) where !(f > 0 && f <= 1):
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a fraction in (0, 1], got \(f)")
        default: break
        }
    }
}

/// Kernels of the selection policies. Rows are read once; SIMD8 lanes with fused multiply-adds.
public enum SelectionKernels {
    /// Dot product of two length-n vectors (SIMD8, two accumulators).
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>()
        var i = 0
        while i + 16 <= n {
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                            rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            acc1.addProduct(ra.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self),
                            rb.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self))
            i += 16
        }
        if i + 8 <= n {
            acc0.addProduct(ra.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self),
                            rb.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self))
            i += 8
        }
        var s = (acc0 + acc1).sum()
        while i < n { s += a[i] * b[i]; i += 1 }
        return s
    }

    /// out[v * rows + j] = vectors[v, :cols] . matrix[row_j, :cols] for v < m, where row_j = indices[j]
    /// (or j when indices is nil) and matrix rows are `ld` floats apart. Each matrix row is read once
    /// for all m vectors (only its first `cols` floats).
    public static func rowDots(matrix: UnsafePointer<Float>, ld: Int, cols: Int, rows: Int,
                               indices: UnsafePointer<Int32>?, vectors: UnsafePointer<Float>, m: Int,
                               out: UnsafeMutablePointer<Float>) {
        if m == 1 {
            if let idx = indices {
                for j in 0..<rows { out[j] = dot(matrix + Int(idx[j]) * ld, vectors, cols) }
            } else {
                for j in 0..<rows { out[j] = dot(matrix + j * ld, vectors, cols) }
            }
            return
        }
        for j in 0..<rows {
            let row = matrix + (indices.map { Int($0[j]) } ?? j) * ld
            for v in 0..<m { out[v * rows + j] = dot(vectors + v * cols, row, cols) }
        }
    }

    /// Increasing indices (into 0..<n) of the k largest scores; ties go to the lower index.
    /// Linear time: a quickselect finds the k-th largest value, one scan collects the indices.
    public static func topK(_ scores: UnsafePointer<Float>, count n: Int, k: Int) -> [Int32] {
        if k >= n { return (0..<Int32(n)).map { $0 } }
        if k <= 0 { return [] }
        let work = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { work.deallocate() }
        for i in 0..<n { let s = scores[i]; work[i] = s.isNaN ? -.infinity : s }
        let threshold = kthLargest(work, count: n, k: k)
        var above = 0
        for i in 0..<n where scores[i] > threshold { above += 1 }
        var ties = k - above
        var out = [Int32]()
        out.reserveCapacity(k)
        for i in 0..<n {
            let s = scores[i]
            if s > threshold { out.append(Int32(i)) } else if s == threshold && ties > 0 { out.append(Int32(i)); ties -= 1 }
        }
        return out
    }

    /// The k-th largest value of x[0..<n] (1-based k), reordering x. Median-of-three quickselect.
    static func kthLargest(_ x: UnsafeMutablePointer<Float>, count n: Int, k: Int) -> Float {
        @inline(__always) func swap(_ a: Int, _ b: Int) { let t = x[a]; x[a] = x[b]; x[b] = t }
        var lo = 0, hi = n - 1
        let target = k - 1                         // position in descending order
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            // Median of three as the pivot, descending order.
            if x[mid] > x[lo] { swap(mid, lo) }
            if x[hi] > x[lo] { swap(hi, lo) }
            if x[hi] > x[mid] { swap(hi, mid) }
            let pivot = x[mid]
            var i = lo, j = hi
            while i <= j {
                while x[i] > pivot { i += 1 }
                while x[j] < pivot { j -= 1 }
                if i <= j { swap(i, j); i += 1; j -= 1 }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { return x[target] }
        }
        return x[target]
    }

    /// Sum of the g query rows of one KV group: [d] from q [g, d] (the group's summed logit direction).
    static func groupSum(_ q: UnsafePointer<Float>, groups g: Int, dim d: Int) -> [Float] {
        var s = [Float](repeating: 0, count: d)
        for h in 0..<g { for i in 0..<d { s[i] += q[h * d + i] } }
        return s
    }

    /// Increasing union of index lists (each increasing).
    static func union(_ lists: [[Int32]], bound n: Int) -> [Int32] {
        if lists.count == 1 { return lists[0] }
        var mark = [Bool](repeating: false, count: n)
        for l in lists { for i in l { mark[Int(i)] = true } }
        var out = [Int32]()
        for i in 0..<n where mark[i] { out.append(Int32(i)) }
        return out
    }
}
