// Support file, not a policy (references: Quest arXiv 2406.10774, Loki arXiv 2406.02542).
// Shared pieces of the query-aware selection policies (Quest, Loki, oracle top-k): how many
// tokens to keep, how a GQA group chooses, SIMD row scoring and linear-time top-k.
import KVCacheCore

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
    /// (NaN ranks lowest). Linear time and branch-free inner loops (scores of either sign are
    /// unpredictable branches): a radix select over the order-preserving bit patterns
    /// (11 + 11 + 10 bits) finds the k-th largest value, one scan collects the indices.
    public static func topK(_ scores: UnsafePointer<Float>, count n: Int, k: Int) -> [Int32] {
        if k >= n { return (0..<Int32(n)).map { $0 } }
        if k <= 0 { return [] }
        let keys = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        defer { keys.deallocate() }
        // The k-th largest key, and how many entries equal to it the top k takes (lowest index first).
        let kth = kthLargest(scores, keys: keys, count: n, k: k)
        let threshold = kth.key
        var ties = kth.ties
        return [Int32](unsafeUninitializedCapacity: k + 1) { buf, count in
            var c = 0
            for i in 0..<n {
                let key = keys[i]
                let tie = equal(key, threshold) & Int(truncatingIfNeeded: UInt64(bitPattern: Int64(-ties)) >> 63)   // ties > 0
                buf[c] = Int32(i)                             // always written; kept only if taken
                c &+= greater(key, threshold) | tie
                ties &-= tie
            }
            count = c
        }
    }

    // Comparisons as arithmetic (1 or 0): with random scores any branch mispredicts half the
    // time, and the compiler turns `cond ? 1 : 0` inside a loop back into a branch.
    @inline(__always) static func greater(_ a: UInt32, _ b: UInt32) -> Int { Int(truncatingIfNeeded: (UInt64(b) &- UInt64(a)) >> 63) }
    @inline(__always) static func equal(_ a: UInt32, _ b: UInt32) -> Int { Int(truncatingIfNeeded: (UInt64(a ^ b) &- 1) >> 63) }

    /// A UInt32 whose unsigned order is the float order (-0 == +0; NaN below everything).
    @inline(__always)
    static func orderKey(_ x: Float) -> UInt32 {
        let raw = x.bitPattern, mag = raw & 0x7FFF_FFFF
        let b = raw & (UInt32(truncatingIfNeeded: equal(mag, 0)) &- 1)                 // -0 -> +0
        let flip = UInt32(bitPattern: Int32(bitPattern: b) >> 31) | 0x8000_0000          // negative: all bits; else the sign bit
        return (b ^ flip) & (UInt32(truncatingIfNeeded: greater(mag, 0x7F80_0000)) &- 1)  // NaN -> 0
    }

    /// Fills keys[0..<n] with the scores' order keys and returns the k-th largest (1-based k < n)
    /// with the number of entries equal to it that a top k takes (k minus those above it: the rank
    /// left inside the last digit's bucket). Short lists (Quest's page scores: T/16 of them) take
    /// four 8-bit digit passes with 256-bin histograms; long ones (Loki's and the oracle's token
    /// scores) three 11-bit passes, the first fused with the key conversion, whose 2048-bin
    /// histograms (48 KB to clear and sum per call) would cost more than the scan itself on a few
    /// hundred scores.
    static func kthLargest(_ scores: UnsafePointer<Float>, keys: UnsafeMutablePointer<UInt32>, count n: Int, k: Int) -> (key: UInt32, ties: Int) {
        if n > 4096 { return kthLargestKeyLong(scores, keys: keys, count: n, k: k) }
        for i in 0..<n { keys[i] = orderKey(scores[i]) }
        return kthLargestKeyShort(keys, count: n, k: k)
    }

    /// Radix select over 8-bit digits, most significant first: each pass histograms the digit of
    /// the keys that match the digits fixed so far, fixes the digit holding the rank still to find,
    /// and compacts the matching keys.
    static func kthLargestKeyShort(_ keys: UnsafePointer<UInt32>, count n: Int, k: Int) -> (key: UInt32, ties: Int) {
        var remaining = k
        let hist = UnsafeMutablePointer<Int32>.allocate(capacity: 2 * 256)   // two interleaved histograms
        let bucket = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        defer { hist.deallocate(); bucket.deallocate() }
        var src = UnsafePointer(keys), m = n
        var result: UInt32 = 0
        for shift in stride(from: 24, through: 0, by: -8) {
            hist.initialize(repeating: 0, count: 512)
            let sh = UInt32(shift)
            var i = 0
            while i + 2 <= m {
                hist[Int((src[i] >> sh) & 0xFF)] &+= 1; hist[256 + Int((src[i + 1] >> sh) & 0xFF)] &+= 1
                i += 2
            }
            if i < m { hist[Int((src[i] >> sh) & 0xFF)] &+= 1 }
            var b = 255
            while Int(hist[b] &+ hist[256 + b]) < remaining { remaining -= Int(hist[b] &+ hist[256 + b]); b -= 1 }
            result |= UInt32(b) << sh
            if shift == 0 { break }
            var c = 0
            for j in 0..<m { let key = src[j]; bucket[c] = key; c &+= equal((key >> sh) & 0xFF, UInt32(b)) }   // c <= j: in place is safe
            src = UnsafePointer(bucket); m = c
        }
        return (result, remaining)
    }

    /// The same with three histogram passes of 11, 11 and 10 bits; the first also converts the
    /// scores into keys.
    static func kthLargestKeyLong(_ scores: UnsafePointer<Float>, keys: UnsafeMutablePointer<UInt32>, count n: Int, k: Int) -> (key: UInt32, ties: Int) {
        var remaining = k                                     // rank still to find inside the chosen bucket
        let hist = UnsafeMutablePointer<Int>.allocate(capacity: 2048)
        let bucket = UnsafeMutablePointer<UInt32>.allocate(capacity: n)
        defer { hist.deallocate(); bucket.deallocate() }
        // Pass 1: the top 11 bits over everything. Scores cluster in few buckets, so four
        // interleaved histograms keep consecutive increments off one memory dependency chain.
        let h4 = UnsafeMutablePointer<UInt32>.allocate(capacity: 4 * 2048)
        defer { h4.deallocate() }
        h4.initialize(repeating: 0, count: 4 * 2048)
        var i4 = 0
        while i4 + 4 <= n {
            let k0 = orderKey(scores[i4]), k1 = orderKey(scores[i4 + 1]), k2 = orderKey(scores[i4 + 2]), k3 = orderKey(scores[i4 + 3])
            keys[i4] = k0; keys[i4 + 1] = k1; keys[i4 + 2] = k2; keys[i4 + 3] = k3
            h4[Int(k0 >> 21)] &+= 1; h4[2048 + Int(k1 >> 21)] &+= 1
            h4[4096 + Int(k2 >> 21)] &+= 1; h4[6144 + Int(k3 >> 21)] &+= 1
            i4 += 4
        }
        while i4 < n { let k0 = orderKey(scores[i4]); keys[i4] = k0; h4[Int(k0 >> 21)] &+= 1; i4 += 1 }
        for b in 0..<2048 { hist[b] = Int(h4[b]) + Int(h4[2048 + b]) + Int(h4[4096 + b]) + Int(h4[6144 + b]) }
        var b1 = 2047
        while hist[b1] < remaining { remaining -= hist[b1]; b1 -= 1 }
        var m = 0
        for i in 0..<n { let key = keys[i]; bucket[m] = key; m &+= equal(key >> 21, UInt32(b1)) }
        // Pass 2: the next 11 bits inside the bucket.
        hist.initialize(repeating: 0, count: 2048)
        for i in 0..<m { hist[Int((bucket[i] >> 10) & 0x7FF)] += 1 }
        var b2 = 2047
        while hist[b2] < remaining { remaining -= hist[b2]; b2 -= 1 }
        // Pass 3: the last 10 bits.
        hist.initialize(repeating: 0, count: 1024)
        for i in 0..<m where Int((bucket[i] >> 10) & 0x7FF) == b2 { hist[Int(bucket[i] & 0x3FF)] += 1 }
        var b3 = 1023
        while hist[b3] < remaining { remaining -= hist[b3]; b3 -= 1 }
        return (UInt32(b1) << 21 | UInt32(b2) << 10 | UInt32(b3), remaining)
    }

    /// Decode-time top-k selection of KV head `head` (Loki, oracle top-k): the best `size` of the
    /// candidates (nil = every stored token) by `scores(q, store, n)`, q [g, d] the group's queries,
    /// [g, n] per query head or [n] summed over the group; unchanged outside decode or when k covers them.
    static func decodeTopK(_ step: LayerStep, head: Int, candidates: [Int32]?, size: SelectionSize, gqa: SelectionGQA,
                           scores: (_ q: UnsafePointer<Float>, _ store: HeadStore, _ n: Int) -> [Float]) -> [Int32]? {
        guard step.phase == .decode else { return candidates }
        let st = step.stores[head], g = step.shape.groupSize
        let n = candidates?.count ?? st.count
        let k = size.count(of: n)
        guard k < n else { return candidates }
        let s = scores(step.queries + head * g * st.headDim, st, n)
        return select(scores: s, count: n, heads: gqa == .queryHead ? g : 1, k: k, candidates: candidates)
    }

    /// The selection from scores over n tokens: the top k of each of `heads` score rows ([heads, n]:
    /// one per query head, or one summed over the group), unioned, mapped back to the candidate
    /// store indices (nil = the tokens 0..<n).
    static func select(scores: [Float], count n: Int, heads: Int, k: Int, candidates: [Int32]?) -> [Int32] {
        let picks = scores.withUnsafeBufferPointer { sb in
            (0..<heads).map { topK(sb.baseAddress! + $0 * n, count: n, k: k) }
        }
        let local = union(picks, bound: n)
        return candidates.map { c in local.map { c[Int($0)] } } ?? local
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
