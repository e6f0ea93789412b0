import KVPolicies

/// `policies:` entries -> PolicySpec values, validated by building each policy (docs/config.md).
enum PolicyParser {
    static let budgetKeys = ["budget", "keep", "compression_ratio"]
    static let keysByPolicy: [String: [String]] = [
        "full": [],
        "streaming_llm": budgetKeys + ["sinks", "schedule", "decode_budget", "position_shift"],
        "h2o": budgetKeys + ["recent_fraction", "scoring", "schedule", "decode_budget"],
        "snapkv": budgetKeys + ["window", "kernel", "pooling"],
        "pyramidkv": budgetKeys + ["window", "kernel", "pooling", "beta", "variant"],
        "tova": budgetKeys + ["schedule", "decode_budget"],
        "knorm": budgetKeys + ["schedule", "decode_budget"],
        "quest": ["budget", "page_size", "dense_layers", "gqa", "setup"],
        "loki": ["calibration", "rank", "d_fraction", "explained_variance", "top_k", "k_fraction", "gqa", "phases", "setup"],
        "oracle_topk": ["top_k", "k_fraction", "gqa", "setup"],
        "head_pooling": ["kv_heads"],
        "svd_heads": ["calibration", "part"],
        "kivi": ["bits", "group_size", "residual"],
        "cla": ["share_factor", "layers", "map_file"],
        "minicache": ["start_layer", "t", "retain_fraction"],
    ]

    static func expand(_ f: Field) throws -> [PolicySpec] {
        if let stack = f.child("stack") {
            _ = try f.mapping(allowed: ["stack"])
            let children = try stack.list()
            if children.isEmpty { throw stack.error("expected at least one policy in the stack") }
            var combos: [[PolicySpec]] = [[]]
            for c in children {
                let options = try expand(c)
                combos = combos.flatMap { prefix in options.map { prefix + [$0] } }
            }
            return try combos.map { try validated(.stack($0), at: stack) }
        }
        guard let nameField = f.child("policy") else {
            throw f.error("expected 'policy: NAME' (one of \(PolicySpec.names.joined(separator: ", "))) or 'stack: [...]'")
        }
        let name = try nameField.string()
        guard let keys = keysByPolicy[name] else {
            throw nameField.error("unknown policy '\(name)'; known: \(PolicySpec.names.joined(separator: ", "))")
        }
        return try Sweep.expand(f, allowed: ["policy"] + keys, fixed: ["policy"]).map { p in
            try validated(try make(name, try PolicySetup.apply(name, p, allowed: keys), at: f), at: f)
        }
    }

    /// Builds the policy once so that bad parameters fail at config time, with the entry's location.
    static func validated(_ spec: PolicySpec, at f: Field) throws -> PolicySpec {
        do { _ = try spec.make() } catch let e as PolicyError {
            if case .invalidParameter(_, let field, let message) = e,
               let child = field == "budget" ? budgetKeys.lazy.compactMap({ f.child($0) }).first : f.child(field) {
                throw child.error(message)
            }
            if case .invalidParameter("stack", _, let message) = e { throw f.error(message) }
            throw f.error(e.localizedDescription)
        }
        return spec
    }

    static func budget(_ p: [String: Field], at f: Field) throws -> Budget {
        let given = budgetKeys.filter { p[$0] != nil }
        guard given.count == 1 else {
            throw f.error("expected exactly one of budget (tokens), keep (fraction kept) or compression_ratio (fraction removed), got \(given.isEmpty ? "none" : given.joined(separator: ", "))")
        }
        if let b = p["budget"] { return .tokens(try b.int()) }
        if let k = p["keep"] {
            let v = try k.double()
            guard v > 0 && v <= 1 else { throw k.error("expected a fraction kept in (0, 1], got \(v)") }
            return .keep(v)
        }
        let r = p["compression_ratio"]!
        return .ratio(try r.double())
    }

    /// `schedule` (whether decode-time eviction runs) and `decode_budget` (what it holds the cache
    /// at; docs/kvpress-semantics.md, "Decode-time eviction").
    static func schedule(_ p: [String: Field], default d: EvictionSchedule.Phases) throws -> EvictionSchedule {
        let phases = try p["schedule"]?.choice(EvictionSchedule.Phases.self) ?? d
        guard let db = p["decode_budget"] else { return EvictionSchedule(phases) }
        let value = try db.choice(DecodeBudget.self)
        guard phases == .always else {
            throw db.error("decode_budget applies to decode-time eviction (schedule: always); this entry's schedule is prefill")
        }
        return EvictionSchedule(phases, decodeBudget: value)
    }

    /// `top_k` (tokens) or `k_fraction` (of the tokens held), exactly one unless there is a default.
    static func size(_ p: [String: Field], at f: Field, default d: SelectionSize?) throws -> SelectionSize {
        let given = ["top_k", "k_fraction"].filter { p[$0] != nil }
        if given.count > 1 { throw f.error("expected one of top_k (tokens) or k_fraction, got both") }
        if let k = p["top_k"] { return .tokens(try k.int()) }
        if let k = p["k_fraction"] { return .fraction(try k.double()) }
        guard let d else { throw f.error("expected top_k (tokens) or k_fraction (fraction of the tokens held)") }
        return d
    }

    static func make(_ name: String, _ p: [String: Field], at f: Field) throws -> PolicySpec {
        func int(_ k: String, _ d: Int) throws -> Int { try p[k]?.int() ?? d }
        func dbl(_ k: String, _ d: Double) throws -> Double { try p[k]?.double() ?? d }
        switch name {
        case "full": return .full
        case "streaming_llm":
            return .streamingLLM(budget: try budget(p, at: f), sinks: try int("sinks", 4),
                                 schedule: try schedule(p, default: .always),
                                 positionShift: try p["position_shift"]?.bool() ?? false)
        case "h2o":
            let scoring = try p["scoring"]?.choice(H2O.Scoring.self) ?? .causal
            return .h2o(budget: try budget(p, at: f), recentFraction: try dbl("recent_fraction", scoring == .observed ? 0 : 0.5),
                        scoring: scoring,
                        schedule: try schedule(p, default: scoring == .observed ? .prefill : .always))
        case "snapkv":
            return .snapKV(budget: try budget(p, at: f), window: try int("window", 64), kernel: try int("kernel", 5),
                           pooling: try p["pooling"]?.choice(SnapKV.Pooling.self) ?? .avg)
        case "pyramidkv":
            return .pyramidKV(budget: try budget(p, at: f), window: try int("window", 64), kernel: try int("kernel", 5),
                              pooling: try p["pooling"]?.choice(SnapKV.Pooling.self) ?? .avg, beta: try dbl("beta", 20),
                              variant: try p["variant"]?.choice(PyramidKV.Variant.self) ?? .authors)
        case "tova":
            return .tova(budget: try budget(p, at: f), schedule: try schedule(p, default: .always))
        case "knorm":
            return .knorm(budget: try budget(p, at: f), schedule: try schedule(p, default: .prefill))
        case "quest":
            guard let b = p["budget"] else { throw f.error("expected 'budget' (tokens read per decode step)") }
            return .quest(budget: try b.int(), pageSize: try int("page_size", 16), denseLayers: try int("dense_layers", 2),
                          gqa: try p["gqa"]?.choice(SelectionGQA.self) ?? .kvGroup)
        case "loki":
            guard let c = p["calibration"] else { throw f.error("expected 'calibration: FILE' (written by `kvlab calibrate`)") }
            let path = try c.string()   // relative to the current directory, like model paths
            let ranks = ["rank", "d_fraction", "explained_variance"].filter { p[$0] != nil }
            if ranks.count > 1 { throw f.error("expected at most one of rank, d_fraction, explained_variance, got \(ranks.joined(separator: ", "))") }
            let rank: Loki.Rank
            if let r = p["rank"] { rank = .dims(try r.int()) }
            else if let t = p["explained_variance"] { rank = .explainedVariance(try t.double()) }
            else { rank = .fraction(try dbl("d_fraction", 0.25)) }
            return .loki(calibration: path, rank: rank, topK: try size(p, at: f, default: .fraction(0.25)),
                         gqa: try p["gqa"]?.choice(SelectionGQA.self) ?? .queryHead,       // the reference's protocol
                         phases: try p["phases"]?.choice(Loki.Phases.self) ?? .prefillAndDecode)
        case "head_pooling":
            guard let n = p["kv_heads"] else { throw f.error("missing 'kv_heads' (KV heads stored after pooling)") }
            return .headPooling(kvHeads: try n.int(min: 1))
        case "svd_heads":
            guard let c = p["calibration"] else { throw f.error("expected 'calibration: FILE' (written by `kvlab calibrate svd-heads`)") }
            return .svdHeads(calibration: try c.string(),   // relative to the current directory, like model paths
                             part: try p["part"]?.choice(SVDHeads.Part.self) ?? .both)
        case "kivi":
            return .kivi(bits: try int("bits", 2), groupSize: try int("group_size", 32), residual: try int("residual", 128))
        case "minicache":
            return .miniCache(startLayer: try p["start_layer"].map { try $0.int(min: 0) }, t: try dbl("t", 0.6),
                              retainFraction: try dbl("retain_fraction", 0.05))
        case "oracle_topk":
            return .oracleTopK(topK: try size(p, at: f, default: nil), gqa: try p["gqa"]?.choice(SelectionGQA.self) ?? .kvGroup)
        case "cla":
            if let m = p["map_file"] {
                let given = ["share_factor", "layers"].filter { p[$0] != nil }
                if !given.isEmpty { throw f.error("map_file sets which layers share; drop \(given.joined(separator: " and "))") }
                return .cla(shareFactor: 2, layers: .all, map: try m.string())   // relative to the current directory
            }
            var layers = CrossLayerSharing.Layers.all
            if let l = p["layers"] {
                if let n = try? l.int() {
                    guard n >= 0 else { throw l.error("expected all, upper_half or a first layer >= 0, got \(n)") }
                    layers = .from(n)
                } else {
                    switch try l.string() {
                    case "all": layers = .all
                    case "upper_half": layers = .upperHalf
                    case let v: throw l.error("expected all, upper_half or a first layer (an integer), got '\(v)'")
                    }
                }
            }
            return .cla(shareFactor: try int("share_factor", 2), layers: layers, map: nil)
        default:
            throw f.error("unknown policy '\(name)'")
        }
    }
}
