// Loki: top-k tokens by low-rank approximate scores in the keys' principal basis.
// Paper: Singhania et al., "Loki: Low-rank Keys for Efficient Sparse Attention", arXiv 2406.02542.
// Reference: github.com/hpcgroup/loki (methods/pca_topk: keys and queries times the PCA components,
// scores from the first r dims scaled by 1/sqrt(d), top-k per query head (after repeat_kv) on every query
// row of every forward, prefill included (modify_llama.py l. 78-98, utils.py mask_attn_pca_topk), no
// sink/recent forcing).
import KVCache
import KVTensor

/// The cache stores every key rotated into its (layer, KV head)'s calibrated principal basis P
/// (`keyBasis`: the store holds k P, queries are multiplied by P, so exact scores are unchanged).
/// In every layer, each query row scores the tokens it may see with the first r rotated dimensions
/// only, (qP)[:r] . (kP)[:r] / sqrt(d), keeps the top k and attends exactly (all d dims, values
/// included) over those k. Reads r/d of the keys for scoring plus k/T of K and V.
///
/// Protocol (docs/selection.md, "Loki's protocol"): `phases: .prefillAndDecode` (default, the
/// reference: every prefill row selects too, k = int(f x keys at the end of the forward) as the
/// reference's attn_weights.shape[-1]; rows that see <= k tokens attend densely) or `.decode`
/// (prefill dense). `gqa: .queryHead` (default, the reference repeats the KV heads: each query head
/// picks and attends its own top k; bytes read are the group's union) or `.kvGroup` (scores summed
/// over the group, one list per KV head). Rows (prefill, and decode under `.queryHead`) go through
/// `selectRows`; decode under `.kvGroup` through `select`. A question prefilled with compression off
/// (`step.compress` false) is attended densely.
///
/// Rank r: a fraction of d, an absolute count, or an explained-variance threshold resolved per
/// layer from the calibration the way the reference does (the number of directions whose
/// cumulative ratio stays below t, maximised over the layer's heads).
/// `select` (the per-KV-head hook, used by stacks and wrappers) returns the group's union under
/// `.queryHead`.
///
/// Layout: the store keeps rows of d floats, so the first r dims of every key are a strided
/// read (r of every d floats), which a CPU's cache lines and prefetchers turn into nearly a
/// full key read. With `lowRankCopy` (default) the policy also keeps the first r rotated dims
/// of every stored key contiguously ([T, r] per layer and KV head, maintained on append and
/// eviction, counted in `metadataBytes`): the scoring pass then really reads r/d of the keys,
/// for r/d of the keys' memory extra. Without it nothing extra is held and the strided slice is
/// read. Bytes read are metered the same way (r/d of the keys) either way.
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
    public let phases: Phases
    /// Rank used in each layer (resolved from `rank` and the calibration).
    public let ranks: [Int]
    /// Whether the first r dims of the keys are also kept contiguously (see the type's comment).
    public let lowRankCopy: Bool
    /// [layer][kvHead] contiguous low-rank key rows, bound to the store they mirror.
    private var mirrors: [[LowRankKeys]] = []

    /// Where Loki selects: the reference's every forward, or decode steps only.
    public enum Phases: String, Hashable, Sendable, CaseIterable {
        case decode
        case prefillAndDecode = "prefill+decode"
    }

    public init(calibration: LokiCalibration, rank: Rank = .fraction(0.25), topK: SelectionSize = .fraction(0.25),
                gqa: SelectionGQA = .queryHead, phases: Phases = .prefillAndDecode, lowRankCopy: Bool = true) throws {
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
        self.calibration = calibration; self.rank = rank; self.topK = topK; self.gqa = gqa; self.phases = phases
        self.lowRankCopy = lowRankCopy
        let d = calibration.headDim
        ranks = (0..<calibration.layers).map { l in
            switch rank {
            case .fraction(let f): return min(d, max(1, Int((f * Double(d)).rounded())))
            case .dims(let r): return r
            case .explainedVariance(let t): return t >= 1 ? d : calibration.referenceRank(t, layer: l)
            }
        }
    }

    public var name: String { "loki(rank=\(rank),k=\(topK),\(gqa.rawValue),\(phases.rawValue))" }

    public func bind(shape: CacheShape) {
        precondition(calibration.matches(shape),
            "loki: the calibration is for \(calibration.layers) layers x \(calibration.kvHeads) KV heads x d \(calibration.headDim), " +
            "the model has \(shape.layers) x \(shape.kvHeads) x \(shape.headDim): calibrate this model with `kvlab calibrate`")
        mirrors = lowRankCopy ? ranks.map { r in (0..<shape.kvHeads).map { _ in LowRankKeys(rank: r) } } : []
    }

    public func reset() { for l in mirrors { for m in l { m.clear() } } }

    public func didAppend(_ step: LayerStep) {
        guard lowRankCopy else { return }
        for (h, st) in step.stores.enumerated() { let m = mirrors[step.layer][h]; m.attach(st); m.sync() }
    }

    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        if lowRankCopy { mirrors[layer][head].remap(kept: kept) }
    }

    /// The mirror of the store `head` of this step reads (it follows the store object under sharing).
    private func mirror(_ step: LayerStep, head: Int, rank r: Int) -> LowRankKeys? {
        guard lowRankCopy else { return nil }
        let st = step.stores[head]
        let own = mirrors[step.layer][head]
        var m = own.store === st ? own : nil
        if m == nil { for l in mirrors.indices where mirrors[l][head].store === st { m = mirrors[l][head]; break } }
        if m == nil { own.attach(st); m = own }
        guard let found = m, found.rank >= r else { return nil }
        found.sync()
        return found
    }

    public func keyBasis(layer: Int, head: Int) -> [Float]? { calibration.basis(layer: layer, head: head) }

    /// The bases held, plus the contiguous low-rank key rows when `lowRankCopy`.
    public var metadataBytes: Int {
        calibration.bases.count * MemoryLayout<Float>.stride + mirrors.reduce(0) { $0 + $1.reduce(0) { $0 + $1.bytes } }
    }

    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        guard step.phase == .decode else { return candidates }
        let st = step.stores[head], d = st.headDim, g = step.shape.groupSize
        let n = candidates?.count ?? st.count
        let k = topK.count(of: n)
        guard k < n else { return candidates }
        let r = ranks[min(step.layer, ranks.count - 1)]
        let q = step.queries + head * g * d
        let scores: [Float]
        if let m = mirror(step, head: head, rank: r) {
            scores = Loki.scores(queries: q, groups: g, dim: d, rows: m.rows, ld: m.rank, count: st.count, rank: r,
                                 indices: candidates, perQueryHead: gqa == .queryHead, scale: 1)
        } else {
            scores = Loki.scores(queries: q, groups: g, store: st, rank: r, indices: candidates,
                                 perQueryHead: gqa == .queryHead, scale: 1)
        }
        step.meter.keyBytes += n * r * MemoryLayout<Float>.stride
        return SelectionKernels.select(scores: scores, count: n, heads: gqa == .queryHead ? g : 1, k: k, candidates: candidates)
    }

    public func selectsRows(_ phase: Phase) -> Bool {
        phase == .prefill ? phases == .prefillAndDecode : gqa == .queryHead
    }

    /// Each row's top k among the tokens it may see, per query head (`.queryHead`) or per group.
    public func selectRows(_ step: LayerStep, head: Int, rows: Range<Int>, visible: [Int]) -> RowSelection? {
        if step.phase == .prefill && !step.compress { return nil }
        let st = step.stores[head], d = st.headDim, g = step.shape.groupSize, hq = step.shape.queryHeads
        let k = topK.count(of: st.count + step.pendingRows)          // the forward's key length (reference)
        guard rows.contains(where: { visible[$0] > k }) else { return nil }
        let r = ranks[min(step.layer, ranks.count - 1)]
        let perHead = gqa == .queryHead, m = perHead ? g : 1, n = rows.count
        // Key rows to score: the contiguous low-rank copy, or the store's rows (a restored copy of KIVI codes).
        let low = mirror(step, head: head, rank: r)
        let restored = low == nil && st.compactCount > 0 ? st.dequantizedCopy() : nil
        let keyRows = low.map { UnsafePointer($0.rows) } ?? UnsafePointer((restored ?? st).keys), ld = low?.rank ?? d
        var lists = [[Int32]?](repeating: nil, count: m * n)
        for i in rows where visible[i] > k {
            let q = step.queries + i * hq * d + head * g * d        // [g, d] the group's query heads of row i
            let scores = Loki.scores(queries: q, groups: g, dim: d, rows: keyRows, ld: ld, count: visible[i], rank: r,
                                     indices: nil, perQueryHead: perHead, scale: 1)   // [m, visible[i]]
            step.meter.keyBytes += visible[i] * r * MemoryLayout<Float>.stride
            scores.withUnsafeBufferPointer { sb in
                for h in 0..<m { lists[h * n + i - rows.lowerBound] = SelectionKernels.topK(sb.baseAddress! + h * visible[i], count: visible[i], k: k) }
            }
        }
        withExtendedLifetime(restored) {}
        return RowSelection(perQueryHead: perHead, lists: lists)
    }

    /// Approximate scores of the stored tokens (at `indices`, nil = all) from the first `rank`
    /// dims of the stored keys and of q [g, d] (both in the store's basis), times `scale`:
    /// [g, n] per query head, or [n] summed over the group.
    public static func scores(queries q: UnsafePointer<Float>, groups g: Int, store: HeadStore, rank r: Int,
                              indices: [Int32]?, perQueryHead: Bool, scale: Float) -> [Float] {
        if store.compactCount > 0 {   // KIVI store: score the dequantized keys
            let k = store.dequantizedCopy()
            return scores(queries: q, groups: g, dim: k.headDim, rows: k.keys, ld: k.headDim, count: k.count, rank: r,
                          indices: indices, perQueryHead: perQueryHead, scale: scale)
        }
        return scores(queries: q, groups: g, dim: store.headDim, rows: store.keys, ld: store.headDim, count: store.count, rank: r,
                      indices: indices, perQueryHead: perQueryHead, scale: scale)
    }

    /// The same from key rows `ld` floats apart (the store's, or a contiguous low-rank copy).
    static func scores(queries q: UnsafePointer<Float>, groups g: Int, dim d: Int, rows keys: UnsafePointer<Float>, ld: Int,
                       count: Int, rank r: Int, indices: [Int32]?, perQueryHead: Bool, scale: Float) -> [Float] {
        let n = indices?.count ?? count
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
                        SelectionKernels.rowDots(matrix: keys, ld: ld, cols: r, rows: n, indices: $0.baseAddress,
                                                 vectors: v, m: m, out: o)
                    }
                } else {
                    SelectionKernels.rowDots(matrix: keys, ld: ld, cols: r, rows: n, indices: nil, vectors: v, m: m, out: o)
                }
            }
        }
        return out
    }
}

/// The first `rank` dims of every key of one store, contiguous ([count, rank]), kept in step with
/// the store: appended rows folded in by `sync`, moved rows by `remap`.
final class LowRankKeys {
    let rank: Int
    private(set) weak var store: HeadStore?
    private(set) var rows: UnsafeMutablePointer<Float>
    private var capacity: Int
    private(set) var covered = 0

    init(rank: Int) {
        self.rank = rank
        capacity = 64
        rows = .allocate(capacity: capacity * rank)
    }
    deinit { rows.deallocate() }

    var bytes: Int { covered * rank * MemoryLayout<Float>.stride }

    func attach(_ s: HeadStore) { if store !== s { store = s; covered = 0 } }
    func clear() { covered = 0 }

    private func reserve(_ n: Int) {
        guard n > capacity else { return }
        let newCap = max(n, capacity * 2)
        let r = UnsafeMutablePointer<Float>.allocate(capacity: newCap * rank)
        r.update(from: rows, count: covered * rank)
        rows.deallocate()
        rows = r; capacity = newCap
    }

    func sync() {
        guard let st = store else { return }
        if covered > st.count { covered = 0 }
        guard covered < st.count else { return }
        reserve(st.count)
        let d = st.headDim
        for j in covered..<st.count { (rows + j * rank).update(from: st.keys + j * d, count: rank) }
        covered = st.count
    }

    /// Row i now holds the token that was at kept[i].
    func remap(kept: [Int]) {
        guard let st = store else { covered = 0; return }
        let old = covered, d = st.headDim
        var increasing = true
        for i in 1..<max(kept.count, 1) where kept[i] <= kept[i - 1] { increasing = false; break }
        if increasing {
            for (i, k) in kept.enumerated() where k != i || k >= old {
                if k < old { (rows + i * rank).update(from: rows + k * rank, count: rank) }
                else { (rows + i * rank).update(from: st.keys + i * d, count: rank) }
            }
        } else {
            let fresh = UnsafeMutablePointer<Float>.allocate(capacity: max(capacity, kept.count) * rank)
            for (i, k) in kept.enumerated() {
                if k < old { (fresh + i * rank).update(from: rows + k * rank, count: rank) }
                else { (fresh + i * rank).update(from: st.keys + i * d, count: rank) }
            }
            rows.deallocate()
            rows = fresh; capacity = max(capacity, kept.count)
        }
        covered = kept.count
    }
}
