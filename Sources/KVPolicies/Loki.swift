// Loki: top-k tokens by low-rank approximate scores in the keys' principal basis.
// Paper: Singhania et al., "Loki: Low-rank Keys for Efficient Sparse Attention", arXiv 2406.02542.
// Reference: github.com/hpcgroup/loki (methods/pca_topk: keys and queries times the PCA components,
// scores from the first r dims scaled by 1/sqrt(d), top-k per query head (after repeat_kv) on every query
// row of every forward, prefill included (modify_llama.py l. 78-98, utils.py mask_attn_pca_topk), no
// sink/recent forcing).
import KVCacheCore
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
public final class Loki: CachePolicy, ConfiguredPolicy {
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

    public struct Config: PolicyConfig {
        /// A `kvlab calibrate` file, relative to the current directory like model paths.
        public var calibration: String
        public var rank: Rank
        public var topK: SelectionSize
        public var gqa: SelectionGQA
        public var phases: Phases
        /// Defaults are the reference's protocol (docs/selection.md): gqa query_head, phases prefill+decode.
        public init(calibration: String, rank: Rank = .fraction(0.25), topK: SelectionSize = .fraction(0.25),
                    gqa: SelectionGQA = .queryHead, phases: Phases = .prefillAndDecode) {
            self.calibration = calibration; self.rank = rank; self.topK = topK; self.gqa = gqa; self.phases = phases
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "loki", family: .selection, summary: "top-k tokens by low-rank scores in the keys' calibrated principal basis; the defaults are the reference's protocol ([selection.md](selection.md))",
            defaults: Config(calibration: ""),
            parameters: [
                .string("calibration", \.calibration, required: true, help: "written by `kvlab calibrate`"),
                PolicyParameter(keys: ["rank", "d_fraction", "explained_variance"], type: "dims | fraction of d | threshold",
                                help: "at most one: rank (dimensions), d_fraction (of d), explained_variance (the reference's per-layer rank)",
                                read: { c, p in
                                    let given = ["rank", "d_fraction", "explained_variance"].filter { p[$0] != nil }
                                    if given.count > 1 { throw p.error("expected at most one of rank, d_fraction, explained_variance, got \(given.joined(separator: ", "))") }
                                    if let r = p["rank"] { c.rank = .dims(try r.intValue()) }
                                    else if let t = p["explained_variance"] { c.rank = .explainedVariance(try t.doubleValue()) }
                                    else if let f = p["d_fraction"] { c.rank = .fraction(try f.doubleValue()) }
                                },
                                write: { c, _ in
                                    switch c.rank {
                                    case .fraction(let f): return [("d_fraction", text(f))]
                                    case .dims(let n): return [("rank", text(n))]
                                    case .explainedVariance(let t): return [("explained_variance", text(t))]
                                    }
                                },
                                check: { c, policy in
                                    switch c.rank {
                                    case .fraction(let f): try Bound<Double>("a fraction of d in (0, 1]") { $0 > 0 && $0 <= 1 }.check("rank", f, policy: policy)
                                    case .dims(let r): try Bound<Int>.atLeast(1).check("rank", r, policy: policy)
                                    case .explainedVariance(let t):
                                        try Bound<Double>("an explained-variance threshold in (0, 1]") { $0 > 0 && $0 <= 1 }.check("rank", t, policy: policy)
                                    }
                                }),
                .selectionSize(\.topK, required: false),
                .gqa(\.gqa),
                .choice("phases", \.phases, help: "prefill+decode: every query row selects (the reference); decode: prefill dense"),
            ],
            // hpcgroup/loki methods/pca_topk/modify_llama.py: top-k over every query row, prefill
            // included, per query head after repeat_kv (KVLab's Loki defaults); `kvlab` is the decode-only,
            // group-summed variant.
            setups: [PolicySetupValues("paper", [("gqa", "query_head"), ("phases", "prefill+decode")]),
                     PolicySetupValues("kvlab", [("gqa", "kv_group"), ("phases", "decode")])],
            sample: "calibration: cal.h5, d_fraction: 0.25, k_fraction: 0.25",
            examples: { n, cal in
                guard let n else { return [Config(calibration: cal, rank: .fraction(1), topK: .fraction(1)),
                                           Config(calibration: cal, rank: .fraction(1), topK: .fraction(1), gqa: .kvGroup, phases: .decode)] }
                return [Config(calibration: cal, rank: .fraction(0.5), topK: .tokens(n)),
                        Config(calibration: cal, rank: .explainedVariance(0.9), topK: .tokens(n), gqa: .kvGroup, phases: .decode)]
            })
        /// Keys stored in the calibration's bases (read when the cache asks: a config's layout combines without reading it).
        public var layout: StorageLayout {
            StorageLayout(owner: Self.descriptor.name, keyBasis: { [calibration] in try? LokiCalibration.loadCached(calibration).basis(layer: $0, head: $1) },
                          mirrorsKeys: true, selects: true,
                          selectsRows: gqa == .queryHead || phases == .prefillAndDecode ? "use gqa: kv_group, phases: decode" : nil)
        }
        public func make() throws -> CachePolicy { try Loki(self, calibration: LokiCalibration.loadCached(calibration)) }
        /// Runs its own prefill: keys in the PCA basis change prefill attention's rounding, and the reference protocol selects keys per query row in prefill.
        public var prefillSharing: PrefillSharing { .none }
    }

    public let config: Config
    public let calibration: LokiCalibration
    public var rank: Rank { config.rank }
    public var topK: SelectionSize { config.topK }
    public var gqa: SelectionGQA { config.gqa }
    public var phases: Phases { config.phases }
    /// Rank used in each layer (resolved from `rank` and the calibration).
    public let ranks: [Int]
    /// Whether the first r dims of the keys are also kept contiguously (see the type's comment).
    public let lowRankCopy: Bool
    /// Contiguous low-rank key rows per (layer, KV head), following the stores they mirror.
    private var mirrors = KeyMirrors<LowRankKeys>()

    /// Where Loki selects: the reference's every forward, or decode steps only.
    public enum Phases: String, Hashable, Sendable, CaseIterable {
        case decode
        case prefillAndDecode = "prefill+decode"
    }

    /// `config` with its calibration already read (`config.calibration` names it in labels).
    public init(_ config: Config, calibration: LokiCalibration, lowRankCopy: Bool = true) throws {
        try config.validate()
        if case .dims(let r) = config.rank, r > calibration.headDim {
            throw PolicyError.invalidParameter(policy: Config.descriptor.name, field: "rank", message: "expected 1...\(calibration.headDim) dimensions, got \(r)")
        }
        self.config = config; self.calibration = calibration; self.lowRankCopy = lowRankCopy
        let d = calibration.headDim
        ranks = (0..<calibration.layers).map { l in
            switch config.rank {
            case .fraction(let f): return min(d, max(1, Int((f * Double(d)).rounded())))
            case .dims(let r): return r
            case .explainedVariance(let t): return t >= 1 ? d : calibration.referenceRank(t, layer: l)
            }
        }
    }

    public convenience init(calibration: LokiCalibration, rank: Rank = Config.descriptor.defaults.rank,
                            topK: SelectionSize = Config.descriptor.defaults.topK, gqa: SelectionGQA = Config.descriptor.defaults.gqa,
                            phases: Phases = Config.descriptor.defaults.phases, lowRankCopy: Bool = true) throws {
        try self.init(Config(calibration: "(in memory)", rank: rank, topK: topK, gqa: gqa, phases: phases),
                      calibration: calibration, lowRankCopy: lowRankCopy)
    }


    public var layout: StorageLayout {
        var l = config.layout
        l.keyBasis = { [calibration] in calibration.basis(layer: $0, head: $1) }
        return l
    }

    public func bind(shape: CacheShape) {
        precondition(calibration.matches(shape),
            "loki: the calibration is for \(calibration.layers) layers x \(calibration.kvHeads) KV heads x d \(calibration.headDim), " +
            "the model has \(shape.layers) x \(shape.kvHeads) x \(shape.headDim): calibrate this model with `kvlab calibrate`")
        if lowRankCopy { mirrors = KeyMirrors(layers: ranks.count, kvHeads: shape.kvHeads) { LowRankKeys(rank: ranks[$0]) } }
    }

    public func reset() { mirrors.reset() }

    public func didAppend(_ step: LayerStep) {
        if lowRankCopy { mirrors.didAppend(step) }
    }

    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        if lowRankCopy { mirrors.didRetain(layer: layer, head: head, kept: kept) }
    }

    /// The low-rank rows of the store `head` of this step reads, when they hold at least r dims.
    private func mirror(_ step: LayerStep, head: Int, rank r: Int) -> LowRankKeys? {
        guard lowRankCopy else { return nil }
        let m = mirrors.mirror(step, head: head)
        return m.rank >= r ? m : nil
    }

    /// The bases held, plus the contiguous low-rank key rows when `lowRankCopy`.
    public var metadataBytes: Int {
        calibration.bases.count * MemoryLayout<Float>.stride + mirrors.bytes
    }

    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        SelectionKernels.decodeTopK(step, head: head, candidates: candidates, size: topK, gqa: gqa) { q, st, n in
            let r = ranks[min(step.layer, ranks.count - 1)], g = step.shape.groupSize, d = st.headDim
            step.meter.keyBytes += n * r * MemoryLayout<Float>.stride
            if let m = mirror(step, head: head, rank: r) {
                return Loki.scores(queries: q, groups: g, dim: d, rows: m.rows.base, ld: m.rank, count: st.count, rank: r,
                                   indices: candidates, perQueryHead: gqa == .queryHead, scale: 1)
            }
            return Loki.scores(queries: q, groups: g, store: st, rank: r, indices: candidates, perQueryHead: gqa == .queryHead, scale: 1)
        }
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
        var lists = [[Int32]?](repeating: nil, count: m * n)
        // Key rows to score [T, ld]: the contiguous low-rank copy, or the store's rows as Float32.
        func score(_ keyRows: UnsafePointer<Float>, ld: Int) {
            for i in rows where visible[i] > k {
                let q = step.queries + i * hq * d + head * g * d        // [g, d] the group's query heads of row i
                let scores = Loki.scores(queries: q, groups: g, dim: d, rows: keyRows, ld: ld, count: visible[i], rank: r,
                                         indices: nil, perQueryHead: perHead, scale: 1)   // [m, visible[i]]
                step.meter.keyBytes += visible[i] * r * MemoryLayout<Float>.stride
                scores.withUnsafeBufferPointer { sb in
                    for h in 0..<m { lists[h * n + i - rows.lowerBound] = SelectionKernels.topK(sb.baseAddress! + h * visible[i], count: visible[i], k: k) }
                }
            }
        }
        if let low = mirror(step, head: head, rank: r) { score(low.rows.base, ld: low.rank) }
        else { st.rows.withFloat32(0..<st.count) { keys, _ in score(keys, ld: d) } }
        return RowSelection(perQueryHead: perHead, lists: lists)
    }

    /// Approximate scores of the stored tokens (at `indices`, nil = all) from the first `rank`
    /// dims of the stored keys and of q [g, d] (both in the store's basis), times `scale`:
    /// [g, n] per query head, or [n] summed over the group.
    public static func scores(queries q: UnsafePointer<Float>, groups g: Int, store: HeadStore, rank r: Int,
                              indices: [Int32]?, perQueryHead: Bool, scale: Float) -> [Float] {
        store.rows.withFloat32(0..<store.count) { keys, _ in   // compact formats: their restored keys
            scores(queries: q, groups: g, dim: store.headDim, rows: keys, ld: store.headDim, count: store.count, rank: r,
                   indices: indices, perQueryHead: perQueryHead, scale: scale)
        }
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
final class LowRankKeys: KeyMirror {
    let rank: Int
    weak var store: HeadStore?
    var covered = 0
    let rows: MirrorRows                 // [tokens, rank]

    init(rank: Int) {
        self.rank = rank
        rows = MirrorRows(width: rank, capacity: 64)
    }

    var bytes: Int { covered * rank * MemoryLayout<Float>.stride }

    func fold(_ keys: UnsafePointer<Float>, tokens: Range<Int>, store: HeadStore) {
        rows.reserve(tokens.upperBound, keeping: tokens.lowerBound)
        for (r, j) in tokens.enumerated() { rows[j].update(from: keys + r * store.headDim, count: rank) }
    }

    /// Row i now holds the token that was at kept[i].
    func remap(kept: [Int]) {
        guard let st = store else { covered = 0; return }
        let old = covered
        rows.reserve(kept.count, keeping: old)
        // Tokens not folded in yet are read from the store.
        func fresh(_ i: Int, into out: UnsafeMutablePointer<Float>) {
            st.rows.withFloat32(i..<(i + 1)) { keys, _ in out.update(from: keys, count: rank) }
        }
        var increasing = true
        for i in 1..<max(kept.count, 1) where kept[i] <= kept[i - 1] { increasing = false; break }
        if increasing {
            for (i, k) in kept.enumerated() where k != i || k >= old {
                if k < old { rows[i].update(from: rows[k], count: rank) } else { fresh(i, into: rows[i]) }
            }
        } else {
            let copy = MirrorRows(width: rank, capacity: max(rows.capacity, kept.count))
            for (i, k) in kept.enumerated() {
                if k < old { copy[i].update(from: rows[k], count: rank) } else { fresh(i, into: copy[i]) }
            }
            rows.replace(with: copy)
        }
        covered = kept.count
    }
}

extension PolicySpec {
    /// Loki's spec (`PolicySpec(Loki.Config(...))`), for existing callers.
    public static func loki(calibration: String, rank: Loki.Rank, topK: SelectionSize, gqa: SelectionGQA,
                            phases: Loki.Phases = .prefillAndDecode) -> PolicySpec {
        PolicySpec(Loki.Config(calibration: calibration, rank: rank, topK: topK, gqa: gqa, phases: phases))
    }
}
