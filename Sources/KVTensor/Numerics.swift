import Foundation

/// Element-wise kernels on contiguous Float buffers. Shapes are given in comments as [rows, cols].
public enum Ops {
    /// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight   (HF LlamaRMSNorm, fp32).
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, rows: Int, dim: Int,
                               eps: Float, into out: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let xr = x + r * dim, orow = out + r * dim
            var ss: Float = 0
            for i in 0..<dim { ss += xr[i] * xr[i] }
            let inv = 1 / (ss / Float(dim) + eps).squareRoot()
            for i in 0..<dim { orow[i] = weight[i] * (xr[i] * inv) }
        }
    }

    /// gate[i] = silu(gate[i]) * up[i], in place over n elements (8 lanes at a time).
    public static func swiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count n: Int) {
        typealias V = SIMD8<Float>
        let g8 = UnsafeMutableRawPointer(gate), u8 = UnsafeRawPointer(up)
        let one = V(repeating: 1)
        var i = 0
        while i + 8 <= n {
            let g = g8.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            let u = u8.loadUnaligned(fromByteOffset: i * 4, as: V.self)
            g8.storeBytes(of: g / (one + exp8(-g)) * u, toByteOffset: i * 4, as: V.self)
            i += 8
        }
        while i < n {
            let g = gate[i]
            gate[i] = g / (1 + exp(-g)) * up[i]
            i += 1
        }
    }

    /// e^x for 8 lanes (Cephes expf: range reduction by ln 2, degree-6 polynomial, 2^n by exponent
    /// bits); relative error ~1e-7 over [-87, 88]. Lanes below -87.3 give 0. Inlinable: the
    /// attention kernels of other modules inline it (a call per 8 lanes was ~1/3 of the softmax).
    @inlinable @inline(__always)
    public static func exp8(_ xIn: SIMD8<Float>) -> SIMD8<Float> {
        typealias V = SIMD8<Float>
        let lo = V(repeating: -87.3), hi = V(repeating: 88.3)
        let tooSmall = xIn .< lo
        var x = xIn
        x.replace(with: lo, where: tooSmall)
        x.replace(with: hi, where: x .> hi)
        let fx = (x * V(repeating: 1.44269504088896341) + V(repeating: 0.5)).rounded(.down)
        var r = x - fx * V(repeating: 0.693359375)
        r = r - fx * V(repeating: -2.12194440e-4)
        let r2 = r * r
        var y = V(repeating: 1.9875691500e-4)
        y = y * r + V(repeating: 1.3981999507e-3)
        y = y * r + V(repeating: 8.3334519073e-3)
        y = y * r + V(repeating: 4.1665795894e-2)
        y = y * r + V(repeating: 1.6666665459e-1)
        y = y * r + V(repeating: 5.0000001201e-1)
        y = y * r2 + r + V(repeating: 1)
        // 2^fx: fx is integral; adding 1.5 * 2^23 puts it in the low mantissa bits.
        let magic = V(repeating: 12582912)
        let ni = unsafeBitCast(fx + magic, to: SIMD8<Int32>.self) &- SIMD8<Int32>(repeating: 0x4B40_0000)
        let pow2 = unsafeBitCast((ni &+ SIMD8<Int32>(repeating: 127)) &<< SIMD8<Int32>(repeating: 23), to: V.self)
        var e = y * pow2
        e.replace(with: 0, where: tooSmall)
        return e
    }


    /// y[i] += x[i].
    @inline(__always)
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count n: Int) {
        for i in 0..<n { y[i] += x[i] }
    }

    /// Adds a bias row [cols] to every row of y [rows, cols].
    public static func addBias(_ bias: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { add(bias, into: y + r * cols, count: cols) }
    }

    /// Numerically stable softmax in place; returns the log-sum-exp.
    @discardableResult
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) -> Float {
        guard n > 0 else { return -.infinity }
        var m = -Float.infinity
        for i in 0..<n where x[i] > m { m = x[i] }
        var s: Float = 0
        for i in 0..<n { let e = exp(x[i] - m); x[i] = e; s += e }
        let inv = 1 / s
        for i in 0..<n { x[i] *= inv }
        return m + log(s)
    }

    /// Index of the largest element (first on ties).
    public static func argmax(_ x: UnsafePointer<Float>, count n: Int) -> Int {
        var best = 0
        for i in 1..<max(n, 1) where x[i] > x[best] { best = i }
        return best
    }

    /// Dot product of two vectors of length n (4-way unrolled so the compiler emits FMA lanes).
    @inline(__always)
    public static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
        var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
        var i = 0
        while i + 4 <= n {
            s0 += a[i] * b[i]; s1 += a[i + 1] * b[i + 1]
            s2 += a[i + 2] * b[i + 2]; s3 += a[i + 3] * b[i + 3]
            i += 4
        }
        while i < n { s0 += a[i] * b[i]; i += 1 }
        return (s0 + s1) + (s2 + s3)
    }

    /// y[i] += a * x[i].
    @inline(__always)
    public static func axpy(_ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        for i in 0..<n { y[i] += a * x[i] }
    }
}

/// Indices of the k largest values (ties broken by the lower index), in descending order of value.
public func topK(_ values: [Float], _ k: Int) -> [Int] {
    let k = min(max(k, 0), values.count)
    if k == 0 { return [] }
    if k == values.count {
        return values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }
    }
    // Partial selection with a small heap would be faster; sorting is exact and simple.
    let order = values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }
    return Array(order.prefix(k))
}
