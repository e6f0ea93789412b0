// Loki: top-k tokens by low-rank approximate scores in the keys' principal basis.
// Paper: Singhania et al., "Loki: Low-rank Keys for Efficient Sparse Attention", arXiv 2406.02542.
// Reference: github.com/hpcgroup/loki (methods/pca_topk: keys and queries times the PCA components,
// scores from the first r dims scaled by 1/sqrt(d), top-k per head, no sink/recent forcing).
import KVCache
import KVTensor

/// The cache stores every key rotated into its (layer, KV head)'s calibrated principal basis P
/// (`keyBasis`: the store holds k P, queries are multiplied by P, so exact scores are unchanged).
/// At every decode step, in every layer, each KV head scores its tokens with the first r rotated
/// dimensions only, (qP)[:r] . (kP)[:r] / sqrt(d), keeps the top k and attends exactly (all d
/// dims, values included) over those k. Reads r/d of the keys for scoring plus k/T of K and V.
///
/// Rank r: a fraction of d, an absolute count, or an explained-variance threshold resolved per
/// layer from the calibration the way the reference does (the number of directions whose
/// cumulative ratio stays below t, maximised over the layer's heads).
/// GQA (the reference repeats the KV heads and selects per query head): `.kvGroup` (default)
/// ranks by the scores summed over the group (one pass with the summed query: (sum_h q_h).k),
/// reading k tokens once per group; `.queryHead` selects per query head and reads the union.
public final class Loki: CachePolicy {
    public enum Rank: Hashable, Sendable, CustomStringConvertible {
        case fraction(Double)
        case dims(Int)
        case explainedVariance(Double)
        public var description: String {
            switch self {
            case .fraction(let f): return "\(f)d"
            case .dims(let r): return "\(r)"
            case .explainedVariance(let t): return "ev\(t)"
            }
        }
    }

    public let calibration: LokiCalibration
    public let rank: Rank
    public let topK: SelectionSize
    public let gqa: SelectionGQA
    /// Rank used in each layer (resolved from `rank` and the calibration).
    public let ranks: [Int]

    public init(calibration: LokiCalibration, rank: Rank = .fraction(0.25), topK: SelectionSize = .fraction(0.25),
                gqa: SelectionGQA = .kvGroup) throws {
        let name = "loki"
        switch rank {
        case .fraction(let f) where !(f > 0 && f <= 1):
            throw PolicyError.invalidParameter(policy: name, field: "rank", message: "expected a fraction of d in (0, 1], got \(f)")
        case .dims(let r) where r < 1 || r > calibration.headDim:
            throw PolicyError.invalidParameter(policy: name, field: "rank", message: "expected 1...\(calibration.headDim) dimensions, got \(r)")
        case .explainedVariance(let t) where !(t > 0 && t <= 1):
            throw PolicyError.invalidParameter(policy: name, field: "rank", message: "expected an explained-variance threshold in (0, 1], got \(t)")
        default: break
        }
        try topK.validate(policy: name, field: "top_k")
        self.calibration = calibration; self.rank = rank; self.topK = topK; self.gqa = gqa
        let d = calibration.headDim
        ranks = (0..<calibration.layers).map { l in
            switch rank {
            case .fraction(let f): return min(d, max(1, Int((f * Double(d)).rounded())))
            case .dims(let r): return r
            case .explainedVariance(let t): return t >= 1 ? d : calibration.referenceRank(t, layer: l)
            }
        }
    }

    public var name: String { "loki(rank=\(rank),k=\(topK),\(gqa.rawValue))" }

    public func bind(shape: CacheShape) {
        precondition(calibration.matches(shape),
            "loki: the calibration is for \(calibration.layers) layers x \(calibration.kvHeads) KV heads x d \(calibration.headDim), " +
            "the model has \(shape.layers) x \(shape.kvHeads) x \(shape.headDim): calibrate this model with `kvlab calibrate`")
    }

    public func keyBasis(layer: Int, head: Int) -> [Float]? { calibration.basis(layer: layer, head: head) }

    /// The bases held (the policy's metadata; nothing per token).
    public var metadataBytes: Int { calibration.bases.count * MemoryLayout<Float>.stride }

    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        guard step.phase == .decode else { return candidates }
        let st = step.stores[head], d = st.headDim, g = step.shape.groupSize
        let n = candidates?.count ?? st.count
        let k = topK.count(of: n)
        guard k < n else { return candidates }
        let r = ranks[min(step.layer, ranks.count - 1)]
        let scores = Loki.scores(queries: step.queries + head * g * d, groups: g, store: st, rank: r,
                                 indices: candidates, perQueryHead: gqa == .queryHead, scale: 1)
        step.meter.keyBytes += n * r * MemoryLayout<Float>.stride
        let heads = gqa == .queryHead ? g : 1
        let picks = scores.withUnsafeBufferPointer { sb in
            (0..<heads).map { SelectionKernels.topK(sb.baseAddress! + $0 * n, count: n, k: k) }
        }
        let local = SelectionKernels.union(picks, bound: n)
        return candidates.map { c in local.map { c[Int($0)] } } ?? local
    }

    /// Approximate scores of the stored tokens (at `indices`, nil = all) from the first `rank`
    /// dims of the stored keys and of q [g, d] (both in the store's basis), times `scale`:
    /// [g, n] per query head, or [n] summed over the group.
    public static func scores(queries q: UnsafePointer<Float>, groups g: Int, store: HeadStore, rank r: Int,
                              indices: [Int32]?, perQueryHead: Bool, scale: Float) -> [Float] {
        let d = store.headDim, n = indices?.count ?? store.count
        var vec = [Float](repeating: 0, count: (perQueryHead ? g : 1) * r)
        for h in 0..<g { for i in 0..<r { vec[(perQueryHead ? h * r : 0) + i] += q[h * d + i] * scale } }
        var out = [Float](repeating: 0, count: (perQueryHead ? g : 1) * n)
        let m = perQueryHead ? g : 1
        out.withUnsafeMutableBufferPointer { ob in
            let o = ob.baseAddress!
            vec.withUnsafeBufferPointer { vb in
                let v = vb.baseAddress!
                if let indices {
                    indices.withUnsafeBufferPointer {
                        SelectionKernels.rowDots(matrix: store.keys, ld: d, cols: r, rows: n, indices: $0.baseAddress,
                                                 vectors: v, m: m, out: o)
                    }
                } else {
                    SelectionKernels.rowDots(matrix: store.keys, ld: d, cols: r, rows: n, indices: nil, vectors: v, m: m, out: o)
                }
            }
        }
        return out
    }
}
