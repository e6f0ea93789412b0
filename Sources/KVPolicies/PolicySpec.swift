// Support file, not a policy: typed policy values for configs and results. Each case's paper and
// reference repository are named on its policy file.
import KVCache

/// A policy and its parameters as a value: what configs sweep, what results record, and what
/// `make()` turns into a live `CachePolicy`. Typed per policy, never a bag of optionals.
public indirect enum PolicySpec: Hashable, Sendable {
    case full
    /// positionShift: keys re-rotated to cache-relative positions (the reference's enable_pos_shift).
    case streamingLLM(budget: Budget, sinks: Int, schedule: EvictionSchedule, positionShift: Bool = false)
    case h2o(budget: Budget, recentFraction: Double, scoring: H2O.Scoring, schedule: EvictionSchedule)
    case snapKV(budget: Budget, window: Int, kernel: Int, pooling: SnapKV.Pooling)
    /// variant: the authors' schedule (KVCache-Factory, default) or kvpress's (docs/kvpress-semantics.md).
    case pyramidKV(budget: Budget, window: Int, kernel: Int, pooling: SnapKV.Pooling, beta: Double, variant: PyramidKV.Variant = .authors)
    case tova(budget: Budget, schedule: EvictionSchedule)
    case knorm(budget: Budget, schedule: EvictionSchedule)
    case headPooling(kvHeads: Int)
    /// SVD KV-head compression from a calibration file (`kvlab calibrate svd-heads`).
    case svdHeads(calibration: String, part: SVDHeads.Part = .both)
    case quest(budget: Int, pageSize: Int, denseLayers: Int, gqa: SelectionGQA)
    /// Defaults are the reference's protocol (docs/selection.md): gqa query_head, phases prefill+decode.
    case loki(calibration: String, rank: Loki.Rank, topK: SelectionSize, gqa: SelectionGQA, phases: Loki.Phases = .prefillAndDecode)
    case oracleTopK(topK: SelectionSize, gqa: SelectionGQA)
    /// Cross-layer sharing: CLA grouping, or a KVSharer map file (which overrides the grouping).
    case cla(shareFactor: Int, layers: CrossLayerSharing.Layers, map: String?)
    /// KIVI quantization (bits >= 16: no quantization).
    case kivi(bits: Int, groupSize: Int, residual: Int)
    /// MiniCache layer merging (startLayer nil = L/2).
    case miniCache(startLayer: Int?, t: Double, retainFraction: Double)
    case stack([PolicySpec])

    /// Builds the policy (validating its parameters).
    public func make() throws -> CachePolicy {
        switch self {
        case .full: return FullCachePolicy()
        case let .streamingLLM(b, sinks, s, shift): return try StreamingLLM(budget: b, sinks: sinks, schedule: s, positionShift: shift)
        case let .h2o(b, recent, scoring, s): return try H2O(budget: b, recentFraction: recent, scoring: scoring, schedule: s)
        case let .snapKV(b, w, k, p): return try SnapKV(budget: b, window: w, kernel: k, pooling: p)
        case let .pyramidKV(b, w, k, p, beta, v): return try PyramidKV(budget: b, window: w, kernel: k, pooling: p, beta: beta, variant: v)
        case let .tova(b, s): return try TOVA(budget: b, schedule: s)
        case let .knorm(b, s): return try Knorm(budget: b, schedule: s)
        case let .headPooling(n): return try HeadPooling(kvHeads: n)
        case let .svdHeads(path, part):
            do { return SVDHeads(calibration: try SVDHeadsCalibration.loadCached(path), path: path, part: part) } catch let e as PolicyError { throw e } catch {
                throw PolicyError.invalidParameter(policy: "svd_heads", field: "calibration", message: "\(path): \(error.localizedDescription)")
            }
        case let .quest(b, page, dense, gqa): return try Quest(tokenBudget: b, pageSize: page, denseLayers: dense, gqa: gqa)
        case let .loki(path, rank, k, gqa, phases):
            let cal: LokiCalibration
            do { cal = try LokiCalibration.loadCached(path) } catch let e as PolicyError { throw e } catch {
                throw PolicyError.invalidParameter(policy: "loki", field: "calibration", message: "\(path): \(error.localizedDescription)")
            }
            return try Loki(calibration: cal, rank: rank, topK: k, gqa: gqa, phases: phases)
        case let .oracleTopK(k, gqa): return try OracleTopK(topK: k, gqa: gqa)
        case let .cla(factor, layers, path):
            guard let path else { return try CrossLayerSharing(shareFactor: factor, layers: layers) }
            let m: KVSharerMap
            do { m = try KVSharerMap.loadCached(path) } catch let e as PolicyError { throw e } catch {
                throw PolicyError.invalidParameter(policy: "cla", field: "map_file", message: "\(path): \(error.localizedDescription)")
            }
            return try CrossLayerSharing(shareFactor: factor, layers: layers, map: m.map)
        case let .kivi(b, g, r): return try KIVI(bits: b, groupSize: g, residual: r)
        case let .miniCache(s, t, r): return try MiniCache(startLayer: s, t: t, retainFraction: r)
        case .stack(let children):
            if children.isEmpty { throw PolicyError.invalidParameter(policy: "stack", field: "stack", message: "expected at least one policy") }
            try Self.checkComposable(children)
            return PolicyStack(try children.map { try $0.make() })
        }
    }

    /// Registered policy names (what configs and the command line accept).
    public static let names = ["full", "streaming_llm", "h2o", "snapkv", "pyramidkv", "tova", "knorm", "quest", "loki", "oracle_topk", "head_pooling", "svd_heads", "cla", "kivi", "minicache", "stack"]

    /// The policy's name in configs and results.
    public var kind: String {
        switch self {
        case .full: return "full"
        case .streamingLLM: return "streaming_llm"
        case .h2o: return "h2o"
        case .snapKV: return "snapkv"
        case .pyramidKV: return "pyramidkv"
        case .tova: return "tova"
        case .knorm: return "knorm"
        case .headPooling: return "head_pooling"
        case .svdHeads: return "svd_heads"
        case .cla: return "cla"
        case .quest: return "quest"
        case .loki: return "loki"
        case .oracleTopK: return "oracle_topk"
        case .kivi: return "kivi"
        case .miniCache: return "minicache"
        case .stack(let c): return c.map(\.kind).joined(separator: "+")
        }
    }

    /// What the policy saves (../shared/POLICIES.md families): plots draw one line per family.
    public var family: String {
        switch self {
        case .full: return "full"
        case .streamingLLM, .h2o, .snapKV, .pyramidKV, .tova, .knorm: return "eviction"
        case .quest, .loki, .oracleTopK: return "selection"
        case .headPooling, .svdHeads, .cla, .miniCache: return "sharing"
        case .kivi: return "quantization"
        case .stack(let c): return c.map(\.family).joined(separator: "+")
        }
    }

    /// Parameters as ordered key/value strings, the budget as the user wrote it (`keep`,
    /// `compression_ratio` or `budget`).
    public var parameters: [(String, String)] {
        parameters(canonical: false)
    }

    /// Parameters with fractional budgets written as kvpress's compression_ratio (`keep: 0.125` as
    /// compression_ratio=0.875): the form run keys were made of before `keep` was echoed, so that
    /// keys (resume, compare) do not depend on how the user wrote the budget.
    public var canonicalParameters: [(String, String)] { parameters(canonical: true) }

    func parameters(canonical: Bool) -> [(String, String)] {
        // decode_budget only when not the default: run keys of the default stay as they were.
        func sched(_ s: EvictionSchedule) -> [(String, String)] {
            [("schedule", s.rawValue)] + (s.decodeBudget == .prompt ? [] : [("decode_budget", s.decodeBudget.rawValue)])
        }
        func bp(_ b: Budget) -> [(String, String)] { Self.budgetParams(b, canonical: canonical) }
        switch self {
        case .full: return []
        case let .streamingLLM(b, sinks, s, shift):   // position_shift only when on: run keys of the default stay as they were
            return bp(b) + [("sinks", "\(sinks)")] + sched(s) + (shift ? [("position_shift", "true")] : [])
        case let .h2o(b, r, sc, s): return bp(b) + [("recent_fraction", "\(r)"), ("scoring", sc.rawValue)] + sched(s)
        case let .snapKV(b, w, k, p): return bp(b) + [("window", "\(w)"), ("kernel", "\(k)"), ("pooling", p.rawValue)]
        case let .pyramidKV(b, w, k, p, beta, v):
            return bp(b) + [("window", "\(w)"), ("kernel", "\(k)"), ("pooling", p.rawValue), ("beta", "\(beta)"), ("variant", v.rawValue)]
        case let .tova(b, s): return bp(b) + sched(s)
        case let .knorm(b, s): return bp(b) + sched(s)
        case let .headPooling(n): return [("kv_heads", "\(n)")]
        case let .svdHeads(path, part): return [("calibration", path)] + (part == .both ? [] : [("part", part.rawValue)])
        case let .cla(factor, layers, path):
            if let path { return [("map_file", path)] }
            let l: String
            switch layers { case .all: l = "all"; case .upperHalf: l = "upper_half"; case .from(let n): l = "\(n)" }
            return [("share_factor", "\(factor)"), ("layers", l)]
        case let .quest(b, page, dense, gqa):
            return [("budget", "\(b)"), ("page_size", "\(page)"), ("dense_layers", "\(dense)"), ("gqa", gqa.rawValue)]
        case let .loki(path, rank, k, gqa, phases):
            let r: (String, String)
            switch rank {
            case .fraction(let f): r = ("d_fraction", "\(f)")
            case .dims(let n): r = ("rank", "\(n)")
            case .explainedVariance(let t): r = ("explained_variance", "\(t)")
            }
            return [("calibration", path), r, Self.sizeParam(k), ("gqa", gqa.rawValue), ("phases", phases.rawValue)]
        case let .oracleTopK(k, gqa): return [Self.sizeParam(k), ("gqa", gqa.rawValue)]
        case let .kivi(b, g, r): return [("bits", "\(b)"), ("group_size", "\(g)"), ("residual", "\(r)")]
        case let .miniCache(s, t, r): return [("start_layer", s.map(String.init) ?? "half"), ("t", "\(t)"), ("retain_fraction", "\(r)")]
        case .stack(let c):
            return c.enumerated().flatMap { i, p in [("\(i).policy", p.kind)] + p.parameters(canonical: canonical).map { ("\(i).\($0.0)", $0.1) } }
        }
    }

    /// One JSON object of the parameters (values as JSON strings or numbers).
    public var parametersJSON: String {
        "{" + parameters.map { k, v in "\"\(k)\": " + (Double(v) != nil ? v : "\"\(v)\"") }.joined(separator: ", ") + "}"
    }

    /// A short human label echoing the budget as written, e.g. "snapkv(keep=0.125,window=64,kernel=5,pooling=avg)".
    public var label: String { label(canonical: false) }

    /// The label with fractional budgets as compression_ratio: what run keys are made of.
    public var canonicalLabel: String { label(canonical: true) }

    func label(canonical: Bool) -> String {
        if case .stack(let c) = self { return c.map { $0.label(canonical: canonical) }.joined(separator: " + ") }
        let p = parameters(canonical: canonical).map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        return p.isEmpty ? kind : "\(kind)(\(p))"
    }

    /// The budget a plot puts on its x axis (the first child's, for stacks).
    public var budget: Budget? {
        switch self {
        case .full, .headPooling, .svdHeads, .cla, .kivi, .miniCache: return nil
        case let .streamingLLM(b, _, _, _), let .h2o(b, _, _, _), let .snapKV(b, _, _, _), let .pyramidKV(b, _, _, _, _, _),
             let .tova(b, _), let .knorm(b, _): return b
        case .quest(let b, _, _, _): return .tokens(b)
        case .loki(_, _, let k, _, _), .oracleTopK(let k, _):
            switch k { case .tokens(let n): return .tokens(n); case .fraction(let f): return .ratio(1 - f) }
        case .stack(let c): return c.lazy.compactMap(\.budget).first
        }
    }

    /// MiniCache rewrites the stores of its layer pairs: it composes with eviction and head pooling,
    /// not with quantization, cross-layer sharing or the selection policies that mirror stored keys.
    static func checkComposable(_ children: [PolicySpec]) throws {
        let shifts = children.contains { if case .streamingLLM(_, _, _, true) = $0 { return true }; return false }
        if shifts, let bad = children.map(\.kind).first(where: ["kivi", "minicache", "quest", "loki"].contains) {
            throw PolicyError.invalidParameter(policy: "stack", field: "stack",
                message: "streaming_llm with position_shift re-rotates stored keys; it does not stack with \(bad) (codes, merged or mirrored keys)")
        }
        let rowSelecting = children.contains {
            if case .loki(_, _, _, let gqa, let phases) = $0 { return gqa == .queryHead || phases == .prefillAndDecode }
            return false
        }
        if rowSelecting && children.filter({ ["quest", "loki", "oracle_topk"].contains($0.kind) }).count > 1 {
            throw PolicyError.invalidParameter(policy: "stack", field: "stack",
                message: "loki with gqa: query_head or phases: prefill+decode chooses the keys of each query row itself; it does not stack with another selection policy (use gqa: kv_group, phases: decode)")
        }
        var others = children.map(\.kind)
        guard let mini = others.firstIndex(of: "minicache") else { return }
        others.remove(at: mini)
        let clash = ["kivi", "cla", "quest", "loki", "oracle_topk", "minicache"]
        if let bad = others.first(where: clash.contains) {
            throw PolicyError.invalidParameter(policy: "stack", field: "stack",
                                               message: "minicache does not stack with \(bad) (it merges the stores that \(bad) also rewrites or mirrors)")
        }
    }

    static func sizeParam(_ k: SelectionSize) -> (String, String) {
        switch k { case .tokens(let n): return ("top_k", "\(n)"); case .fraction(let f): return ("k_fraction", "\(f)") }
    }

    static func budgetParams(_ b: Budget, canonical: Bool = false) -> [(String, String)] {
        switch b {
        case .tokens(let n): return [("budget", "\(n)")]
        case .ratio(let r): return [("compression_ratio", "\(r)")]
        case .keep(let v): return canonical ? [("compression_ratio", "\(1 - v)")] : [("keep", "\(v)")]
        }
    }
}
