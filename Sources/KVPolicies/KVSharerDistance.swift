// Support file, not a policy: KVSharer's layer distance. Paper: Yang et al., "KVSharer: Efficient Inference via
// Layer-Wise Dissimilar KV Cache Sharing", arXiv 2410.18517. Reference: github.com/yangyifei729/KVSharer,
// test_llama.ipynb cell 12 (avg_past_key_values: the samples' caches summed position by position and divided by
// the sample count), cell 13 (compute_euclidean_distance: torch.norm(k_i - k_j, p=2, dim=-1).mean(), the two
// distances of K and V averaged), cell 14 (pairs ranked by np.argsort(...)[::-1]: descending).
import KVCacheCore

/// A policy that keeps everything (a dense run) and averages each layer's post-RoPE keys and values
/// over calibration sequences, position by position: the reference's averaged KV cache [Hkv, T, d].
/// Sequences are separated by `reset()` (what `KVCache.reset()` calls), each starting at position 0.
/// Like the reference, only sequences as long as the first one are averaged (the reference's
/// `try: ... except: pass` skips a cache whose shape differs from the first sample's; it still divides
/// by the number of all samples, a factor that scales every distance alike: KVLab divides by the
/// number averaged, so the means are means). `skipped` counts the others.
public final class LayerMeanRecorder: CachePolicy {
    public private(set) var shape: CacheShape?
    /// Sequences averaged and sequences left out (another length than the first).
    public private(set) var sequences = 0
    public private(set) var skipped = 0
    /// Positions per averaged sequence (the first sequence's length).
    public private(set) var positions: Int?
    private var keySums: [[Double]] = [], valueSums: [[Double]] = []   // [L][T * Hkv * d] over averaged sequences
    private var keyCur: [[Double]] = [], valueCur: [[Double]] = []     // [L][T * Hkv * d] the current sequence
    private var curLength: [Int] = []                                  // [L] positions seen in the current sequence

    public init() {}
    public var name: String { "layer_mean_recorder" }
    public var layers: Int { shape?.layers ?? 0 }

    public func bind(shape: CacheShape) {
        guard self.shape != shape else { return }
        self.shape = shape
        keySums = Array(repeating: [], count: shape.layers); valueSums = keySums
        keyCur = keySums; valueCur = keySums
        curLength = Array(repeating: 0, count: shape.layers)
        sequences = 0; skipped = 0; positions = nil
    }

    public func didAppend(_ step: LayerStep) {
        for (h, st) in step.stores.enumerated() {
            let new = (st.count - step.rows)..<st.count, d = st.headDim
            st.rows.withFloat32(new) { keys, values in
                for (j, r) in new.enumerated() { add(layer: step.layer, head: h, position: st.position(r), key: keys + j * d, value: values + j * d) }
            }
        }
    }

    /// One token of one KV head: key and value [d] at `position` of the current sequence.
    public func add(layer l: Int, head h: Int, position p: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        guard let s = shape else { preconditionFailure("LayerMeanRecorder: bind(shape:) first") }
        let d = s.headDim, width = s.kvHeads * d
        if (p + 1) * width > keyCur[l].count {
            keyCur[l] += [Double](repeating: 0, count: (p + 1) * width - keyCur[l].count)
            valueCur[l] += [Double](repeating: 0, count: (p + 1) * width - valueCur[l].count)
        }
        let o = p * width + h * d
        for i in 0..<d { keyCur[l][o + i] = Double(key[i]); valueCur[l][o + i] = Double(value[i]) }
        curLength[l] = max(curLength[l], p + 1)
    }

    /// A new sequence starts (KVCache.reset): the current one is averaged in, or skipped.
    public func reset() { finishSequence() }

    /// Closes the current sequence: averaged in when as long as the first, else skipped.
    public func finishSequence() {
        guard let n = curLength.first, n > 0 else { return }
        if positions == nil { positions = n }
        if curLength.allSatisfy({ $0 == positions }) {
            for l in keySums.indices {
                if keySums[l].isEmpty { keySums[l] = keyCur[l]; valueSums[l] = valueCur[l] }
                else { for i in keySums[l].indices { keySums[l][i] += keyCur[l][i]; valueSums[l][i] += valueCur[l][i] } }
            }
            sequences += 1
        } else {
            skipped += 1
        }
        for l in keyCur.indices { keyCur[l] = []; valueCur[l] = []; curLength[l] = 0 }
    }

    /// Layer `l`'s averaged keys and values, [T, Hkv, d] each (rows of d: one position of one KV head).
    public func means(layer l: Int) -> (keys: [Double], values: [Double]) {
        finishSequence()
        let n = Double(max(sequences, 1))
        return (keySums[l].map { $0 / n }, valueSums[l].map { $0 / n })
    }
}

extension KVSharerSearch {
    /// The reference's distance of two averaged caches: the L2 norm over the feature dimension of
    /// each (head, position) row of d values, averaged over the rows. a, b: [rows * d].
    public static func distance(_ a: [Double], _ b: [Double], dim d: Int) -> Double {
        precondition(a.count == b.count && d > 0 && a.count % d == 0, "distance: shapes differ")
        let rows = a.count / d
        guard rows > 0 else { return 0 }
        var total = 0.0
        for r in 0..<rows {
            var s = 0.0
            for i in 0..<d { let x = a[r * d + i] - b[r * d + i]; s += x * x }
            total += s.squareRoot()
        }
        return total / Double(rows)
    }

    /// Layer pairs (i > j) in descending order of (distance(K̄_i, K̄_j) + distance(V̄_i, V̄_j)) / 2
    /// over the per-position averaged caches ([T * Hkv * d] per layer; ties: lower i, then lower j
    /// first, for determinism — the reference's argsort leaves ties unspecified).
    public static func rank(keyMeans: [[Double]], valueMeans: [[Double]], dim: Int) -> [KVSharerMap.Candidate] {
        var out: [KVSharerMap.Candidate] = []
        for i in 0..<keyMeans.count { for j in 0..<i {
            let d = (distance(keyMeans[i], keyMeans[j], dim: dim) + distance(valueMeans[i], valueMeans[j], dim: dim)) / 2
            out.append(.init(layer: i, source: j, distance: d))
        } }
        return out.enumerated().sorted { a, b in
            a.element.distance != b.element.distance ? a.element.distance > b.element.distance : a.offset < b.offset
        }.map(\.element)
    }
}
