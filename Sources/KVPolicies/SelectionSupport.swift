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

    /// Increasing indices (into 0..<n) of the k largest scores; ties go to the lower index
    /// (NaN ranks lowest). Linear time: a radix select over the order-preserving bit patterns
    /// (11 + 11 + 10 bits) finds the k-th largest value, one scan collects the indices.
    public static func topK(_ scores: UnsafePointer<Float>, count n: Int, k: Int) -> [Int32] {
        if k >= n { return (0..<Int32(n)).map { $0 } }
        if k <= 0 { return [] }
        let threshold = kthLargestKey(scores, count: n, k: k)
        var above = 0
        for i in 0..<n where orderKey(scores[i]) > threshold { above += 1 }
        var ties = k - above
        var out = [Int32]()
        out.reserveCapacity(k)
        for i in 0..<n {
            let key = orderKey(scores[i])
            if key > threshold { out.append(Int32(i)) } else if key == threshold && ties > 0 { out.append(Int32(i)); ties -= 1 }
        }
        return out
    }

    /// A UInt32 whose unsigned order is the float order (-0 == +0; NaN below everything).
    @inline(__always)
    static func orderKey(_ x: Float) -> UInt32 {
        if x.isNaN { return 0 }
        let b = x == 0 ? 0 : x.bitPattern
        return (b & 0x8000_0000) != 0 ? ~b : b | 0x8000_0000
    }

    /// The order key of the k-th largest of x[0..<n] (1-based k < n): three histogram passes.
    static func kthLargestKey(_ x: UnsafePointer<Float>, count n: Int, k: Int) -> UInt32 {
        var remaining = k                               // rank still to find inside the chosen bucket
        var hist = [Int](repeating: 0, count: 2048)
        // Pass 1: the top 11 bits over everything.
        for i in 0..<n { hist[Int(orderKey(x[i]) >> 21)] += 1 }
        var b1 = 2047
        while hist[b1] < remaining { remaining -= hist[b1]; b1 -= 1 }
        var bucket = [UInt32]()
        bucket.reserveCapacity(hist[b1])
        for i in 0..<n { let key = orderKey(x[i]); if Int(key >> 21) == b1 { bucket.append(key) } }
        // Pass 2: the next 11 bits inside the bucket.
        for i in 0..<2048 { hist[i] = 0 }
        for key in bucket { hist[Int((key >> 10) & 0x7FF)] += 1 }
        var b2 = 2047
        while hist[b2] < remaining { remaining -= hist[b2]; b2 -= 1 }
        // Pass 3: the last 10 bits.
        for i in 0..<1024 { hist[i] = 0 }
        for key in bucket where Int((key >> 10) & 0x7FF) == b2 { hist[Int(key & 0x3FF)] += 1 }
        var b3 = 1023
        while hist[b3] < remaining { remaining -= hist[b3]; b3 -= 1 }
        return UInt32(b1) << 21 | UInt32(b2) << 10 | UInt32(b3)
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
