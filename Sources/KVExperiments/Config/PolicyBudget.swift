import KVPolicies

extension PolicySpec {
    /// The budget as the config wrote it: its key (`budget`, `keep`, `compression_ratio`, `top_k`,
    /// `k_fraction`) and value; a stack's is its first child's that has one; nil without a budget
    /// (full, KIVI, sharing). Recorded per run as `budget_kind` / `budget_value`.
    var budgetForm: (kind: String, value: Double)? {
        switch self {
        case .full, .headPooling, .svdHeads, .cla, .kivi, .miniCache: return nil
        case let .streamingLLM(b, _, _, _), let .h2o(b, _, _, _), let .snapKV(b, _, _, _), let .pyramidKV(b, _, _, _, _, _),
             let .tova(b, _), let .knorm(b, _):
            return (b.userForm.key, b.userForm.value)
        case .quest(let b, _, _, _): return ("budget", Double(b))
        case .loki(_, _, let k, _, _), .oracleTopK(let k, _):
            switch k { case .tokens(let n): return ("top_k", Double(n)); case .fraction(let f): return ("k_fraction", f) }
        case .stack(let c): return c.lazy.compactMap(\.budgetForm).first
        }
    }

    /// Tokens that a policy always keeps whatever the scores say: SnapKV's and PyramidKV's
    /// observation window, StreamingLLM's sinks (name, count).
    var forcedTokens: [(what: String, count: Int, budget: Budget)] {
        switch self {
        case let .snapKV(b, w, _, _), let .pyramidKV(b, w, _, _, _, _): return [("window", w, b)]
        case let .streamingLLM(b, sinks, _, _): return [("sinks", sinks, b)]
        case .stack(let c): return c.flatMap(\.forcedTokens)
        default: return []
        }
    }
}

extension ExperimentConfig {
    /// Budgets that a window or sink count dominates: the forced tokens take half of the budget or
    /// more at some task context (the budget resolved against the task's context, an upper bound
    /// of the compressed context), e.g. SnapKV's 64-token window at 1K tokens with keep 1/8.
    /// `kvlab validate` and `kvlab run` print them.
    public var warnings: [String] {
        var out: [String] = []
        let contexts = Array(Set(tasks.map(\.context))).sorted()
        for p in policies {
            for (what, count, budget) in p.forcedTokens {
                let hits = contexts.compactMap { c -> (Int, Int)? in
                    let cap = budget.capacity(for: c)
                    return count * 2 >= cap ? (c, cap) : nil
                }
                guard let (c, cap) = hits.last else { continue }
                let at: String
                if case .tokens = budget { at = "" } else {
                    at = " at context \(c)" + (hits.count > 1 ? " (and \(hits.count - 1) shorter context\(hits.count > 2 ? "s" : ""))" : "")
                }
                let share = Int((Double(count) / Double(max(cap, 1)) * 100).rounded())
                out.append("\(p.label): the \(what) (\(count) tokens) \(what == "sinks" ? "use" : "uses") \(share)% of the budget of \(cap) tokens\(at); " +
                           "half or more of what is kept is fixed by position, not chosen by the policy")
            }
        }
        return out
    }
}
