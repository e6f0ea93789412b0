// KIVI: tuning-free asymmetric 2-bit KV-cache quantization (keys per channel, values per token, full-precision residual).
// Paper: Liu, Yuan et al., "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache", ICML 2024, arXiv 2402.02750.
// Reference: jy-yuan/KIVI (models/llama_kivi.py and quant/: per-channel key groups along tokens, per-token value groups along channels, residual kept in fp16).
import KVCache

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
public final class KIVI: CachePolicy {
    public let bits: Int
    public let groupSize: Int
    public let residual: Int

    public init(bits: Int = 2, groupSize: Int = 32, residual: Int = 128) throws {
        guard [2, 4, 8, 16, 32].contains(bits) else {
            throw PolicyError.invalidParameter(policy: "kivi", field: "bits", message: "expected 2, 4, 8 or 16 (no quantization), got \(bits)")
        }
        guard groupSize >= 1 else {
            throw PolicyError.invalidParameter(policy: "kivi", field: "group_size", message: "expected >= 1, got \(groupSize)")
        }
        guard residual >= 0 && residual % groupSize == 0 else {
            throw PolicyError.invalidParameter(policy: "kivi", field: "residual",
                                               message: "expected a multiple of group_size (\(groupSize)) >= 0, got \(residual)")
        }
        self.bits = bits; self.groupSize = groupSize; self.residual = residual
    }

    public var name: String { "kivi(b=\(bits),g=\(groupSize),r=\(residual))" }

    public var quantization: QuantizationSpec? {
        bits >= 16 ? nil : QuantizationSpec(bits: bits, groupSize: groupSize, residual: residual)
    }
}
