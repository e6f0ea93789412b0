// Support file, not a policy: the scored-eviction template, after kvpress's ScorerPress
// (reference: NVIDIA/kvpress, presses/scorer_press.py).
import Foundation
import KVCacheCore

/// The template every scored eviction policy shares (kvpress's ScorerPress): score each stored
/// token of a KV head, keep the `capacity` best (ties to the older token), physically remove the
/// rest. A policy supplies `scores`; tokens it must keep (SnapKV's window, StreamingLLM's sinks)
/// score above every other.
public protocol ScoredEviction: CachePolicy {
    var budget: Budget { get }
    var schedule: EvictionSchedule { get }
    /// One score per stored token of `head` (higher = keep). Called only when over budget.
    func scores(_ step: LayerStep, head: Int) -> [Float]
    /// Tokens kept for `layer` out of `length` (override for per-layer budgets).
    func capacity(layer: Int, length: Int) -> Int
}

extension ScoredEviction {
    public func capacity(layer: Int, length: Int) -> Int { budget.capacity(for: length) }

    /// The budget in force for this step: resolved against the compressed context at prefill;
    /// during decoding (schedule always) held at that budget plus, with decode budget `prompt`, the
    /// tokens prefilled after the compressed context without compression (the question).
    public func currentCapacity(_ step: LayerStep) -> Int? {
        if step.phase == .prefill { return capacity(layer: step.layer, length: step.tokensSeen) }
        guard schedule.phases == .always else { return nil }
        let base = capacity(layer: step.layer, length: max(step.promptLength, 1))
        switch schedule.decodeBudget {
        case .prompt: return base + max(step.prefillEnd - step.promptLength, 0)
        case .context: return base
        }
    }

    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        guard let cap = currentCapacity(step), step.stores[head].count > cap else { return nil }
        return Self.topIndices(scores(step, head: head), keep: max(cap, 0))
    }

    /// The `keep` highest scores' indices in increasing index order (ties: the lower index wins).
    /// Dropping one token (the decode-time case) is a linear scan, not a sort.
    public static func topIndices(_ scores: [Float], keep: Int) -> [Int] {
        guard keep < scores.count else { return Array(scores.indices) }
        if keep == scores.count - 1 {
            var drop = 0
            for i in 1..<scores.count where scores[i] <= scores[drop] { drop = i }
            return Array(0..<drop) + Array((drop + 1)..<scores.count)
        }
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        return order.prefix(keep).sorted()
    }
}
