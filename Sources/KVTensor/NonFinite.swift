import Foundation

/// Finding NaN and ±infinity in Float buffers: weights at load, hidden states and logits in the
/// forward pass. A value is non-finite exactly when `x * 0` is NaN, so the fast path multiplies
/// by zero and adds, 16 lanes at a time, and looks for the exact index only when the sum is NaN:
/// one streaming read, as fast as the memory (the SmolLM2-135M weights: docs/robustness.md).
extension Ops {
    /// The index of the first NaN or ±infinity among `x[0..<n]`, or nil when all are finite.
    public static func firstNonFinite(_ x: UnsafePointer<Float>, count n: Int) -> Int? {
        typealias V = SIMD16<Float>
        let raw = UnsafeRawPointer(x)
        var acc0 = V(repeating: 0), acc1 = V(repeating: 0)
        var i = 0
        while i + 32 <= n {
            acc0 += raw.loadUnaligned(fromByteOffset: i * 4, as: V.self) * 0
            acc1 += raw.loadUnaligned(fromByteOffset: (i + 16) * 4, as: V.self) * 0
            i += 32
        }
        var tail: Float = 0
        while i < n { tail += x[i] * 0; i += 1 }
        let sum = (acc0 + acc1).sum() + tail
        guard sum.isNaN else { return nil }
        for j in 0..<n where !x[j].isFinite { return j }
        return nil
    }

    /// Whether every value of `x` is finite.
    public static func allFinite(_ x: [Float]) -> Bool {
        x.withUnsafeBufferPointer { $0.baseAddress.map { firstNonFinite($0, count: x.count) == nil } ?? true }
    }
}
