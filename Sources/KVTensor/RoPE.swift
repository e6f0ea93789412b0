import Foundation

/// Frequency scaling applied to rotary embeddings (HF `rope_scaling`).
public enum RoPEScaling: Equatable, Sendable, Codable {
    case none
    /// Positions divided by `factor` (equivalently inv_freq / factor).
    case linear(factor: Double)
    /// Llama 3.1: low frequencies scaled by 1/factor, high kept, a smooth ramp in between.
    case llama3(factor: Double, lowFreqFactor: Double, highFreqFactor: Double, originalMaxPositions: Int)
}

/// Rotary position embedding in the HF "rotate_half" layout: dimension i pairs with i + d/2.
public struct RotaryEmbedding: Sendable {
    public let headDim: Int                 // d
    public let invFreq: [Float]             // [d/2]

    public init(headDim: Int, theta: Double, scaling: RoPEScaling = .none) {
        precondition(headDim % 2 == 0, "RoPE needs an even head dimension")
        self.headDim = headDim
        let half = headDim / 2
        // Same arithmetic as transformers: float32 exponent, float32 pow.
        var inv = (0..<half).map { i -> Float in 1 / Float(pow(Float(theta), Float(2 * i) / Float(headDim))) }
        switch scaling {
        case .none: break
        case .linear(let factor):
            inv = inv.map { $0 / Float(factor) }
        case .llama3(let factor, let low, let high, let original):
            let lowWavelen = Double(original) / low, highWavelen = Double(original) / high
            inv = inv.map { f -> Float in
                let wavelen = 2 * Double.pi / Double(f)
                if wavelen < highWavelen { return f }
                if wavelen > lowWavelen { return Float(Double(f) / factor) }
                let smooth = (Double(original) / wavelen - low) / (high - low)
                return Float((1 - smooth) * Double(f) / factor + smooth * Double(f))
            }
        }
        invFreq = inv
    }

    /// cos/sin of one position: [d/2] each.
    @inline(__always)
    public func angles(position: Int, cos c: UnsafeMutablePointer<Float>, sin s: UnsafeMutablePointer<Float>) {
        let p = Float(position)
        for i in 0..<invFreq.count {
            let a = p * invFreq[i]   // float32 product, as in transformers
            c[i] = Float(Foundation.cos(Double(a)))
            s[i] = Float(Foundation.sin(Double(a)))
        }
    }

    /// Rotates x [rows, heads * d] in place; row r is at position positions[r].
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, positions: [Int]) {
        let half = headDim / 2
        var c = [Float](repeating: 0, count: half), s = [Float](repeating: 0, count: half)
        c.withUnsafeMutableBufferPointer { cb in
            s.withUnsafeMutableBufferPointer { sb in
                for r in 0..<rows {
                    angles(position: positions[r], cos: cb.baseAddress!, sin: sb.baseAddress!)
                    for h in 0..<heads {
                        rotate(x + (r * heads + h) * headDim, cos: cb.baseAddress!, sin: sb.baseAddress!)
                    }
                }
            }
        }
    }

    /// Rotates one head vector [d] given precomputed cos/sin [d/2]. Negative sin undoes a rotation.
    @inline(__always)
    public func rotate(_ v: UnsafeMutablePointer<Float>, cos c: UnsafePointer<Float>, sin s: UnsafePointer<Float>) {
        let half = headDim / 2
        for i in 0..<half {
            let a = v[i], b = v[i + half]
            v[i] = a * c[i] - b * s[i]
            v[i + half] = b * c[i] + a * s[i]
        }
    }
}
