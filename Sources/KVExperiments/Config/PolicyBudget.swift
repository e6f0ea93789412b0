import KVPolicies

extension ExperimentConfig {
    /// Budgets that a window or sink count dominates: the forced tokens take half of the budget or
    /// more at some task context (the budget resolved against the task's context, an upper bound
    /// of the compressed context), e.g. SnapKV's 64-token window at 1K tokens with keep 1/8.
    /// `kvlab validate` and `kvlab run` print them.
    public var warnings: [String] {
        var out: [String] = []
        let contexts = Array(Set(tasks.map(\.context))).sorted()
        for p in policies {
            for forced in p.forcedTokens {
                let (what, count, budget) = (forced.what, forced.count, forced.budget)
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
