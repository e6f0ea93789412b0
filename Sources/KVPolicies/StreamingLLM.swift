// StreamingLLM: attention sinks + a recent window.
// Paper: Xiao et al., "Efficient Streaming Language Models with Attention Sinks", arXiv 2309.17453.
// Reference: github.com/mit-han-lab/streaming-llm (StartRecentKVCache); kvpress StreamingLLMPress.
import KVCacheCore

/// Keeps the first `sinks` tokens and the most recent `capacity - sinks` tokens; the same
/// positions for every head. With ratio r at prefill this is exactly kvpress's StreamingLLMPress
/// (which scores 1 on sinks and tail, 0 on the `T - int(T(1-r))` tokens after the sinks).
/// Keys keep their original RoPE positions by default (kvpress's StreamingLLMPress). With
/// `positionShift` (the reference's `enable_pos_shift`, what it uses to stream past the trained
/// length) the cache re-rotates stored keys to cache-relative positions after every eviction: the
/// model sees the kept tokens as contiguous, so the sinks sit just before the window
/// (`KVCache.shiftPositions`; the reference caches pre-RoPE keys and rotates them all every step,
/// which gives the same scores).
public final class StreamingLLM: ScoredEviction, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var sinks: Int
        public var schedule: EvictionSchedule
        public var positionShift: Bool
        /// Defaults follow the reference: 4 sinks, budget enforced as generation grows.
        public init(budget: Budget, sinks: Int = 4, schedule: EvictionSchedule = .always, positionShift: Bool = false) {
            self.budget = budget; self.sinks = sinks; self.schedule = schedule; self.positionShift = positionShift
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "streaming_llm", family: .eviction, summary: "attention sinks plus the most recent tokens",
            defaults: Config(budget: .tokens(1)),
            parameters: [
                .budget(\.budget),
                .int("sinks", \.sinks, .atLeast(0), help: "first tokens always kept"),
                .schedule(\.schedule),
                .bool("position_shift", \.positionShift, onlyWhenTrue: true,
                      help: "re-rotate the stored keys to cache-relative positions after each eviction (the reference's enable_pos_shift)"),
            ],
            sample: "keep: 0.125, sinks: 4",
            check: { c in
                if case .tokens(let n) = c.budget, c.sinks >= n {
                    throw PolicyError.invalidParameter(policy: "streaming_llm", field: "sinks",
                                                       message: "expected fewer sinks than the budget (\(n)), got \(c.sinks)")
                }
            },
            examples: { n, _ in
                let b = Budget.tokens(n ?? 1 << 20)
                return [Config(budget: b), Config(budget: b, schedule: .prefill), Config(budget: b, positionShift: true)]
            })
        public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name, positionShift: positionShift) }
        public func make() throws -> CachePolicy { try StreamingLLM(self) }
        /// Shares the whole dense prefill: evicts (and shifts positions) at step ends, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
        public var forcedTokens: [ForcedTokens] { [ForcedTokens("sinks", count: sinks, budget: budget)] }
    }

    public let config: Config
    public var budget: Budget { config.budget }
    public var sinks: Int { config.sinks }
    public var schedule: EvictionSchedule { config.schedule }
    public var positionShift: Bool { config.positionShift }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(budget: Budget, sinks: Int = Config.descriptor.defaults.sinks,
                            schedule: EvictionSchedule = Config.descriptor.defaults.schedule,
                            positionShift: Bool = Config.descriptor.defaults.positionShift) throws {
        try self.init(Config(budget: budget, sinks: sinks, schedule: schedule, positionShift: positionShift))
    }


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
