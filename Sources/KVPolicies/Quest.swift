// Quest: query-aware page selection from per-page key bounds.
// Paper: Tang et al., "Quest: Query-Aware Sparsity for Efficient Long-Context LLM Inference", arXiv 2406.10774.
// Reference: github.com/mit-han-lab/Quest (kernel path: top P-1 pages by bound plus the last page, layers < 2 dense).
import KVCacheCore
import KVTensor

/// Pages of `pageSize` store indices (aligned to index 0). Per layer, KV head and page the
/// elementwise max M and min m of the stored (post-RoPE) keys are kept, updated on every append
/// and rebuilt for the pages an eviction changed. Prefill is dense. At a decode step in layers
/// >= `denseLayers`, with page budget P = tokenBudget / pageSize: if the store has <= P pages
/// the step is dense; otherwise every complete page is scored by the upper bound
/// sum_i max(q_i M_i, q_i m_i) >= q.k of each of its keys, the top P-1 are read plus the last
/// (partial or complete) page, and exact attention runs over those tokens only.
///
/// GQA (the reference is per head): `.kvGroup` (default) sums the g query heads' bounds, so the
/// group reads P pages once and bytes read honour the budget; `.queryHead` lets each query head
/// pick its pages and reads the union (up to g(P-1)+1 pages), as the per-head reference would.
///
/// Bound = q+ . M + q- . m with q+ = max(q, 0), q- = min(q, 0) (M >= m), so a page is scored with
/// one dot product over its [M | m] row of 2d floats; summed over a group it is one dot with the
/// summed [q+ | q-]. Per step the page rows are the only full-length read: 2/S of the keys.
public final class Quest: CachePolicy, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var budget: Int
        public var pageSize: Int
        public var denseLayers: Int
        public var gqa: SelectionGQA
        public init(budget: Int, pageSize: Int = 16, denseLayers: Int = 2, gqa: SelectionGQA = .kvGroup) {
            self.budget = budget; self.pageSize = pageSize; self.denseLayers = denseLayers; self.gqa = gqa
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "quest", family: .selection, summary: "query-aware page selection from per-page key bounds; reads only the chosen pages ([selection.md](selection.md))",
            defaults: Config(budget: 1),
            parameters: [
                .int("budget", \.budget, required: true, isBudget: true, help: "tokens read per decode step"),
                .int("page_size", \.pageSize, .atLeast(1), help: "tokens per page"),
                .int("dense_layers", \.denseLayers, .atLeast(0), help: "first layers attended densely"),
                .gqa(\.gqa),
            ],
            // mit-han-lab/Quest evaluation/quest_attention.py: pages (chunk_size) of 16, layers 0 and 1
            // dense (`self.layer_id < 2`), selection after repeat_kv, i.e. per query head; the question
            // (the prompt's last 400 characters, evaluation/passkey/passkey.py) is fed token by token
            // through the sparse decode path (`suffix: decode`, the passkey default).
            setups: [PolicySetupValues("paper", [("page_size", "16"), ("dense_layers", "2"), ("gqa", "query_head")]),
                     PolicySetupValues("kvlab", [("page_size", "16"), ("dense_layers", "2"), ("gqa", "kv_group")])],
            sample: "budget: 48, dense_layers: 0",
            check: { c in
                if c.budget < c.pageSize {
                    throw PolicyError.invalidParameter(policy: "quest", field: "budget",
                        message: "expected at least one page (page_size \(c.pageSize) tokens), got \(c.budget)")
                }
            },
            examples: { n, _ in
                let b = max(n ?? 1 << 20, 8)
                return [Config(budget: b, pageSize: 8, denseLayers: 0), Config(budget: b, pageSize: 8, denseLayers: 0, gqa: .queryHead)]
            })
        public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name, mirrorsKeys: true, selects: true) }
        public func make() throws -> CachePolicy { try Quest(self) }
        /// Shares the whole dense prefill: selects in decode only (page bounds kept at didAppend); prefill attention stays dense.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var tokenBudget: Int { config.budget }
    public var pageSize: Int { config.pageSize }
    public var denseLayers: Int { config.denseLayers }
    public var gqa: SelectionGQA { config.gqa }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(tokenBudget: Int, pageSize: Int = Config.descriptor.defaults.pageSize,
                            denseLayers: Int = Config.descriptor.defaults.denseLayers, gqa: SelectionGQA = Config.descriptor.defaults.gqa) throws {
        try self.init(Config(budget: tokenBudget, pageSize: pageSize, denseLayers: denseLayers, gqa: gqa))
    }

    /// Whole pages read per step (the last page included).
    public var pageBudget: Int { tokenBudget / pageSize }

    /// Page summaries per (layer, KV head), following the stores they summarise.
    private var summaries = KeyMirrors<QuestPages>()

    public func bind(shape: CacheShape) {
        summaries = KeyMirrors(layers: shape.layers, kvHeads: shape.kvHeads) { _ in QuestPages(headDim: shape.headDim, pageSize: pageSize) }
    }

    public func reset() { summaries.reset() }
    public var metadataBytes: Int { summaries.bytes }
    public func didAppend(_ step: LayerStep) { summaries.didAppend(step) }
    public func didRetain(layer: Int, head: Int, kept: [Int]) { summaries.didRetain(layer: layer, head: head, kept: kept) }

    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        guard step.layer >= denseLayers, step.phase == .decode else { return candidates }
        let summary = summaries.mirror(step, head: head)     // under sharing, the summaries of the store read
        let st = step.stores[head], d = st.headDim, g = step.shape.groupSize, S = pageSize, P = pageBudget
        let q = step.queries + head * g * d                     // [g, d] this group's query rows
        let heads = gqa == .kvGroup ? 1 : g
        let w = Quest.boundVectors(q, groups: g, dim: d, summed: gqa == .kvGroup)   // [heads, 2d]

        if let cand = candidates {
            // Stacked after another selector: pages that hold candidates; read at most P of them.
            if cand.count <= tokenBudget { return cand }
            var pageList: [Int32] = [], seen = Set<Int32>()
            for c in cand where seen.insert(c / Int32(S)).inserted { pageList.append(c / Int32(S)) }
            let lastPage = Int(cand.max()!) / S
            if pageList.count <= P { return cand }
            let scored = pageList.filter { Int($0) != lastPage }
            let chosen = choose(summary: summary, pages: scored, w: w, heads: heads, keep: P - 1, meter: step.meter)
            var keep = Set(chosen.map { Int($0) })
            keep.insert(lastPage)
            return cand.filter { keep.contains(Int($0) / S) }
        }

        let T = st.count
        let nPages = (T + S - 1) / S
        if nPages <= P { return nil }
        let chosen = choose(summary: summary, pages: nil, count: nPages - 1, w: w, heads: heads, keep: P - 1, meter: step.meter)
        var out = [Int32]()
        out.reserveCapacity((chosen.count + 1) * S)
        for p in chosen { let lo = Int(p) * S; for i in lo..<(lo + S) { out.append(Int32(i)) } }
        for i in ((nPages - 1) * S)..<T { out.append(Int32(i)) }
        return out
    }

    /// Top `keep` pages (increasing) among `pages` (or 0..<count), by bound; union over heads.
    private func choose(summary: QuestPages, pages: [Int32]? = nil, count: Int = 0, w: [Float], heads: Int,
                        keep: Int, meter: ReadMeter) -> [Int32] {
        let n = pages?.count ?? count
        guard keep > 0, n > 0 else { return [] }
        let d2 = 2 * summary.headDim
        var scores = [Float](repeating: 0, count: heads * n)
        scores.withUnsafeMutableBufferPointer { sb in
            w.withUnsafeBufferPointer { wb in
                if let pages {
                    pages.withUnsafeBufferPointer { pb in
                        SelectionKernels.rowDots(matrix: summary.rows.base, ld: d2, cols: d2, rows: n, indices: pb.baseAddress,
                                                 vectors: wb.baseAddress!, m: heads, out: sb.baseAddress!)
                    }
                } else {
                    SelectionKernels.rowDots(matrix: summary.rows.base, ld: d2, cols: d2, rows: n, indices: nil,
                                             vectors: wb.baseAddress!, m: heads, out: sb.baseAddress!)
                }
            }
        }
        meter.metadataBytes += n * d2 * MemoryLayout<Float>.stride
        let picks = (0..<heads).map { h in
            scores.withUnsafeBufferPointer { SelectionKernels.topK($0.baseAddress! + h * n, count: n, k: keep) }
        }
        let local = SelectionKernels.union(picks, bound: n)
        return pages.map { p in local.map { p[Int($0)] } } ?? local
    }

    /// The page rows [pages, 2d] (max | min of each page's keys) currently held for (layer, KV head),
    /// brought up to date with the store first. For tests and tools.
    public func pageSummaries(layer: Int, head: Int) -> [Float] {
        let s = summaries[layer, head]
        s.sync()
        return Array(UnsafeBufferPointer(start: s.rows.base, count: s.pageCount * 2 * s.headDim))
    }

    /// [q+ | q-] rows, [heads, 2d]: one per query head, or their sum over the group.
    static func boundVectors(_ q: UnsafePointer<Float>, groups g: Int, dim d: Int, summed: Bool) -> [Float] {
        var w = [Float](repeating: 0, count: (summed ? 1 : g) * 2 * d)
        for h in 0..<g {
            let base = summed ? 0 : h * 2 * d
            for i in 0..<d {
                let v = q[h * d + i]
                if v > 0 { w[base + i] += v } else { w[base + d + i] += v }
            }
        }
        return w
    }

    /// Page bounds of `store` for query rows q [g, d] (per query head [g, pages], or summed [pages]):
    /// the scores `select` ranks (the last, possibly partial, page included). For tests and tools.
    public static func pageBounds(store: HeadStore, pageSize: Int, queries q: UnsafePointer<Float>, groups g: Int,
                                  perQueryHead: Bool) -> [Float] {
        let pages = QuestPages(headDim: store.headDim, pageSize: pageSize)
        pages.attach(store)
        pages.sync()
        let d = store.headDim, heads = perQueryHead ? g : 1
        let w = boundVectors(q, groups: g, dim: d, summed: !perQueryHead)
        var out = [Float](repeating: 0, count: heads * pages.pageCount)
        out.withUnsafeMutableBufferPointer { ob in
            w.withUnsafeBufferPointer { wb in
                SelectionKernels.rowDots(matrix: pages.rows.base, ld: 2 * d, cols: 2 * d, rows: pages.pageCount, indices: nil,
                                         vectors: wb.baseAddress!, m: heads, out: ob.baseAddress!)
            }
        }
        return out
    }
}

/// Per-page key bounds of one store: entry p = [max over the page's keys (d) | min (d)].
final class QuestPages: KeyMirror {
    let headDim: Int
    let pageSize: Int
    weak var store: HeadStore?
    var covered = 0                      // store tokens folded in
    let rows: MirrorRows                 // [pages, 2d]

    init(headDim: Int, pageSize: Int) {
        self.headDim = headDim; self.pageSize = pageSize
        rows = MirrorRows(width: 2 * headDim, capacity: 16)
    }

    var pageCount: Int { (covered + pageSize - 1) / pageSize }
    var bytes: Int { pageCount * 2 * headDim * MemoryLayout<Float>.stride }

    func fold(_ keys: UnsafePointer<Float>, tokens: Range<Int>, store: HeadStore) {
        let d = headDim
        rows.reserve((tokens.upperBound + pageSize - 1) / pageSize, keeping: (tokens.lowerBound + pageSize - 1) / pageSize)
        for (r, j) in tokens.enumerated() {
            let mx = rows[j / pageSize], mn = mx + d, k = keys + r * d
            if j % pageSize == 0 {
                mx.update(from: k, count: d); mn.update(from: k, count: d)
            } else {
                for i in 0..<d { let v = k[i]; if v > mx[i] { mx[i] = v }; if v < mn[i] { mn[i] = v } }
            }
        }
    }

    /// The store now holds at index i the token that was at kept[i]: rebuild the pages whose
    /// content changed (moved tokens, and the last page when the store shrank).
    func remap(kept: [Int]) {
        guard let st = store else { covered = 0; return }
        let n = kept.count
        if n == 0 { covered = 0; return }
        let old = covered
        var dirty = Set<Int>()
        for i in 0..<n where kept[i] != i || kept[i] >= old { dirty.insert(i / pageSize) }
        if old != n { dirty.insert((n - 1) / pageSize) }
        precondition(st.count == n, "Quest: store size differs from the retention")
        rows.reserve((n + pageSize - 1) / pageSize, keeping: pageCount)
        for p in dirty {
            let lo = p * pageSize, hi = min(lo + pageSize, n)
            guard lo < hi else { continue }
            st.rows.withFloat32(lo..<hi) { keys, _ in fold(keys, tokens: lo..<hi, store: st) }
        }
        covered = n
    }
}

extension PolicySpec {
    /// Quest's spec (`PolicySpec(Quest.Config(...))`), for existing callers.
    public static func quest(budget: Int, pageSize: Int, denseLayers: Int, gqa: SelectionGQA) -> PolicySpec {
        PolicySpec(Quest.Config(budget: budget, pageSize: pageSize, denseLayers: denseLayers, gqa: gqa))
    }
}
