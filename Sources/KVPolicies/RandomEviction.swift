// Random eviction: keeps a uniformly random subset of the tokens, the baseline an eviction policy must beat.
// Paper: none (the random baseline of the eviction papers' ablations).
// Reference: NVIDIA/kvpress presses/random_press.py (RandomPress: i.i.d. uniform scores through ScorerPress, optional seed).
import KVCacheCore

/// Scores every stored token with a uniform random number and keeps the `capacity` best per KV
/// head (kvpress's RandomPress through its ScorerPress): a uniformly random subset of the budget's
/// size, a different one per layer and KV head. A token's score is a hash of (seed, layer, KV head,
/// position), so runs are reproducible for a seed, a token keeps its score whenever it is rescored
/// (decode-time eviction), and nothing is stored for it. kvpress draws torch.rand per call instead:
/// the same distribution, not the same draws.
public final class RandomEviction: ScoredEviction, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var budget: Budget
        public var seed: Int
        public var schedule: EvictionSchedule
        public init(budget: Budget, seed: Int = 0, schedule: EvictionSchedule = .prefill) {
            self.budget = budget; self.seed = seed; self.schedule = schedule
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "random", family: .eviction, summary: "keeps a uniformly random subset of the tokens (kvpress's RandomPress): the baseline to beat",
            defaults: Config(budget: .tokens(1)),
            parameters: [.budget(\.budget), .int("seed", \.seed, .atLeast(0), help: "seed of the random scores"), .schedule(\.schedule)],
            sample: "keep: 0.25, seed: 1",
            examples: { n, _ in
                let b = Budget.tokens(n ?? 1 << 20)
                return [Config(budget: b), Config(budget: b, seed: 7, schedule: .always)]
            })
        public func make() throws -> CachePolicy { try RandomEviction(self) }
        /// Shares the whole dense prefill: evicts at step ends, after each layer attended (scores hash positions).
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var budget: Budget { config.budget }
    public var schedule: EvictionSchedule { config.schedule }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public func scores(_ step: LayerStep, head: Int) -> [Float] {
        let st = step.stores[head]
        return (0..<st.count).map { Self.uniform(seed: config.seed, layer: step.layer, head: head, position: st.position($0)) }
    }

    /// A number uniform in [0, 1) (24 bits) for (seed, layer, KV head, position): SplitMix64's mix of them.
    static func uniform(seed: Int, layer: Int, head: Int, position: Int) -> Float {
        var z = UInt64(truncatingIfNeeded: seed)
        for v in [layer, head, position] {
            z = (z ^ UInt64(truncatingIfNeeded: v)) &+ 0x9E37_79B9_7F4A_7C15
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
        }
        return Float(z >> 40) / Float(1 << 24)
    }
}
