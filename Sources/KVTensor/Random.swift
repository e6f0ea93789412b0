import Foundation

/// Deterministic, platform-independent random numbers for seeded models, tasks and sampling.
/// SplitMix64 (Steele et al. 2014): one 64-bit state, full period, passes BigCrush.
public struct SeededRandom: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    public mutating func nextUniform() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// Standard normal (Box-Muller).
    public mutating func nextNormal() -> Float {
        let u1 = max(Double(next() >> 11) / Double(1 << 53), 1e-300)
        let u2 = Double(next() >> 11) / Double(1 << 53)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }

    /// Derives an independent stream, e.g. one per layer or per sample.
    public func fork(_ salt: UInt64) -> SeededRandom {
        var r = SeededRandom(seed: state ^ (salt &* 0xD1B5_4A32_D192_ED03))
        _ = r.next()
        return r
    }
}

