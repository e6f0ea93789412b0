// StreamingLLM: attention sinks + a recent window.
// Paper: Xiao et al., "Efficient Streaming Language Models with Attention Sinks", arXiv 2309.17453.
// Reference: github.com/mit-han-lab/streaming-llm (StartRecentKVCache); kvpress StreamingLLMPress.
import KVCache

/// Keeps the first `sinks` tokens and the most recent `capacity - sinks` tokens; the same
/// positions for every head. With ratio r at prefill this is exactly kvpress's StreamingLLMPress
/// (which scores 1 on sinks and tail, 0 on the `T - int(T(1-r))` tokens after the sinks).
/// Keys keep their original RoPE positions by default (kvpress's StreamingLLMPress). With
/// `positionShift` (the reference's `enable_pos_shift`, what it uses to stream past the trained
/// length) the cache re-rotates stored keys to cache-relative positions after every eviction: the
/// model sees the kept tokens as contiguous, so the sinks sit just before the window
/// (`KVCache.shiftPositions`; the reference caches pre-RoPE keys and rotates them all every step,
/// which gives the same scores).
public final class StreamingLLM: ScoredEviction {
    public let budget: Budget
    public let sinks: Int
    public let schedule: EvictionSchedule
    public let positionShift: Bool

    /// Defaults follow the reference: 4 sinks, budget enforced as generation grows.
    public init(budget: Budget, sinks: Int = 4, schedule: EvictionSchedule = .always, positionShift: Bool = false) throws {
        try budget.validate(policy: "streaming_llm")
        if sinks < 0 { throw PolicyError.invalidParameter(policy: "streaming_llm", field: "sinks", message: "expected >= 0, got \(sinks)") }
        if case .tokens(let n) = budget, sinks >= n {
            throw PolicyError.invalidParameter(policy: "streaming_llm", field: "sinks",
                                               message: "expected fewer sinks than the budget (\(n)), got \(sinks)")
        }
        self.budget = budget; self.sinks = sinks; self.schedule = schedule; self.positionShift = positionShift
    }

    public var name: String { "streaming_llm(budget=\(budget),sinks=\(sinks),\(schedule)\(positionShift ? ",shift" : ""))" }
    public var shiftsPositions: Bool { positionShift }

    /// Sinks (the first `sinks` positions) score +inf; every other token its position, so the
    /// newest stay. Position-based, because decode-time evictions reuse slots.
    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        let st = step.stores[head]
        return (0..<st.count).map { j in
            let p = st.position(j)
            return p < sinks ? .infinity : Float(p)
        }
    }
}
