// Head ablation as a task option: the causal test of "Retrieval Head Mechanistically Explains
// Long-Context Factuality" (arXiv 2404.15574). Reference: nightdessert/Retrieval_Head,
// needle_in_haystack_with_mask.py (mask_topk > 0: the top heads of the score file; < 0: random heads).
import Foundation
import KVModel
import KVPolicies
import KVTensor

/// Which query heads a task's runs switch off (`ablate_heads:` in a task entry, docs/heads.md), and how.
/// The full-cache reference of the task stays the intact model, so fidelity metrics measure the
/// ablation (plus the policy) against it.
public struct HeadAblation: Hashable, Sendable {
    public enum Selection: Hashable, Sendable {
        /// No head (a control row in a sweep).
        case none
        /// The k highest-scoring heads of the score file.
        case top(Int)
        /// k heads drawn uniformly with a seed, never among the score file's top k (when a file is given;
        /// the reference draws outside its top-100 list).
        case random(Int, seed: UInt64)
        /// Explicit (layer, head) pairs.
        case list([[Int]])
    }
    public var selection: Selection
    /// Head-score file (`kvlab calibrate heads`) and the map ranked.
    public var scores: String?
    public var score: String
    public var mode: HeadMask.Mode
    public var phases: HeadMask.Phases

    public init(selection: Selection, scores: String? = nil, score: String = "retrieval_score",
                mode: HeadMask.Mode = .uniform, phases: HeadMask.Phases = .decode) {
        self.selection = selection; self.scores = scores; self.score = score; self.mode = mode; self.phases = phases
    }

    /// Parses `none`, `top:K`, `random:K:SEED` or `heads:L.H,L.H,...`.
    public static func parseSelection(_ text: String) throws -> Selection {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func bad() -> TaskError { .invalidSpec("ablate_heads: expected none, top:K, random:K:SEED or heads:L.H,L.H,...; got '\(text)'") }
        switch parts[0] {
        case "none" where parts.count == 1: return .none
        case "top" where parts.count == 2:
            guard let k = Int(parts[1]), k >= 1 else { throw bad() }
            return .top(k)
        case "random" where parts.count == 3:
            guard let k = Int(parts[1]), k >= 1, let seed = UInt64(parts[2]) else { throw bad() }
            return .random(k, seed: seed)
        case "heads" where parts.count == 2:
            let pairs = try parts[1].split(separator: ",").map { p -> [Int] in
                let lh = p.split(separator: ".").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard lh.count == 2, let l = lh[0], let h = lh[1], l >= 0, h >= 0 else { throw bad() }
                return [l, h]
            }
            guard !pairs.isEmpty else { throw bad() }
            return .list(pairs)
        default: throw bad()
        }
    }

    /// The selection as written in configs.
    public var selectionText: String {
        switch selection {
        case .none: return "none"
        case .top(let k): return "top:\(k)"
        case .random(let k, let seed): return "random:\(k):\(seed)"
        case .list(let p): return "heads:" + p.map { "\($0[0]).\($0[1])" }.joined(separator: ",")
        }
    }

    /// Canonical text (part of a run's identity).
    public var label: String {
        var s = selectionText
        if let scores { s += ";scores=\(scores);score=\(score)" }
        return s + ";mode=\(mode.rawValue);phases=\(phases.rawValue)"
    }

    /// The mask for a model of `layers` x `queryHeads`, nil for `none`. Errors name the file and field.
    public func resolve(layers: Int, queryHeads: Int) throws -> HeadMask? {
        var file: HeadScoreFile? = nil
        if let scores {
            let f = try HeadScoreFile.load(scores)
            guard f.layers == layers, f.queryHeads == queryHeads else {
                throw TaskError.invalidSpec("ablate_scores \(scores): scores are for \(f.layers) layers x \(f.queryHeads) query heads; the model has \(layers) x \(queryHeads)")
            }
            file = f
        }
        let pairs: [(layer: Int, head: Int)]
        switch selection {
        case .none: return nil
        case .top(let k):
            guard let file else { throw TaskError.invalidSpec("ablate_heads top:\(k) needs ablate_scores: FILE (kvlab calibrate heads)") }
            pairs = try file.ranked(by: score).prefix(k).map { ($0.layer, $0.head) }
        case .random(let k, let seed):
            let excluded = Set(try file?.ranked(by: score).prefix(k).map { $0.layer * queryHeads + $0.head } ?? [])
            var pool = (0..<(layers * queryHeads)).filter { !excluded.contains($0) }
            guard k <= pool.count else { throw TaskError.invalidSpec("ablate_heads random:\(k): only \(pool.count) heads to draw from") }
            var rng = SeededRandom(seed: seed)
            var chosen: [Int] = []
            for _ in 0..<k { chosen.append(pool.remove(at: Int(rng.next() % UInt64(pool.count)))) }   // without replacement
            pairs = chosen.sorted().map { ($0 / queryHeads, $0 % queryHeads) }
        case .list(let p): pairs = p.map { ($0[0], $0[1]) }
        }
        do {
            return try HeadMask(pairs: pairs, layers: layers, queryHeads: queryHeads, mode: mode, phases: phases)
        } catch { throw TaskError.invalidSpec("ablate_heads \(selectionText): \(error.localizedDescription)") }
    }
}
