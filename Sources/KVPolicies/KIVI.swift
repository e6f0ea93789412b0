// KIVI: tuning-free asymmetric 2-bit KV-cache quantization (keys per channel, values per token, full-precision residual).
// Paper: Liu, Yuan et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", ICML 2024, arXiv 2402.02750.
// Reference: jy-yuan/KIVI (models/llama_kivi.py and quant/: per-channel key groups along tokens, per-token value groups along channels, residual kept in fp16).
import KVCacheCore

/// Tells the cache to keep older tokens as packed b-bit codes (`QuantizationSpec`): asymmetric
/// min-max, scale = (max - min) / (2^b - 1), zero point = min; keys per channel in groups of G
/// consecutive tokens, values per token in groups of G channels; at every step end, after the
/// other policies' retention, while more than R + G - 1 tokens are Float32 the oldest G become
/// one key group (the newest R to R + G - 1 tokens stay Float32). Decode attention reads the
/// codes (`QuantizedAttention`); prefill attention over the prompt is exact Float32.
///
/// Differences from the reference (which keeps fp16): scales and zero points are Float32 (the
/// cache's precision); the reference quantizes keys in chunks of R when its key residual fills and
/// values one token at a time when the value residual exceeds R, and at prefill quantizes all but
/// T mod R keys and all but R values; here keys and values share one residual and move to codes G
/// tokens at a time. bits >= 16 stores nothing quantized: the full cache, exactly.
public final class KIVI: CachePolicy, ConfiguredPolicy {
    public struct Config: PolicyConfig {
        public var bits: Int
        public var groupSize: Int
        public var residual: Int
        public init(bits: Int = 2, groupSize: Int = 32, residual: Int = 128) {
            self.bits = bits; self.groupSize = groupSize; self.residual = residual
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "kivi", family: .quantization, summary: "older tokens as 2/4/8-bit codes: keys per channel, values per token; the newest in full precision ([kivi.md](kivi.md))",
            defaults: Config(),
            parameters: [
                .int("bits", \.bits, Bound("2, 4, 8 or 16 (no quantization)") { [2, 4, 8, 16, 32].contains($0) }, help: "bits per code (16: no quantization, the full cache)"),
                .int("group_size", \.groupSize, .atLeast(1), help: "tokens per key group, channels per value group"),
                .int("residual", \.residual, help: "newest tokens kept in full precision (a multiple of group_size)"),
            ],
            sample: "bits: 2, group_size: 32, residual: 64",
            check: { c in
                guard c.residual >= 0 && c.residual % c.groupSize == 0 else {
                    throw PolicyError.invalidParameter(policy: "kivi", field: "residual",
                                                       message: "expected a multiple of group_size (\(c.groupSize)) >= 0, got \(c.residual)")
                }
            },
            // A residual of at least the context quantizes nothing: the full cache.
            examples: { n, _ in
                n == nil ? [Config(bits: 16), Config(bits: 2, groupSize: 8, residual: 1 << 20)]
                         : [Config(bits: 2, groupSize: 8, residual: 16), Config(bits: 4, groupSize: 8, residual: 16), Config(bits: 8, groupSize: 16, residual: 0)]
            })
        /// bits >= 16: no quantization (the full cache).
        public var layout: StorageLayout {
            StorageLayout(owner: Self.descriptor.name,
                          quantization: bits >= 16 ? nil : QuantizationSpec(bits: bits, groupSize: groupSize, residual: residual))
        }
        public func make() throws -> CachePolicy { try KIVI(self) }
        /// Shares the whole dense prefill: quantizes at step ends, after each layer attended.
        public var prefillSharing: PrefillSharing { .whole }
    }

    public let config: Config
    public var bits: Int { config.bits }
    public var groupSize: Int { config.groupSize }
    public var residual: Int { config.residual }

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
    }

    public convenience init(bits: Int = Config.descriptor.defaults.bits, groupSize: Int = Config.descriptor.defaults.groupSize,
                            residual: Int = Config.descriptor.defaults.residual) throws {
        try self.init(Config(bits: bits, groupSize: groupSize, residual: residual))
    }


}
