import Foundation

/// Decode attention over a KIVI-quantized `HeadStore`, reading the packed codes (never a
/// dequantized copy of the cache).
///
/// Keys, per key group with per-channel mins m and scales s (scale = 1/sqrt(d)):
///   scale * q.k = scale * sum_c q_c (m_c + s_c x_c) = [scale * q.m] + sum_c (scale * q_c s_c) x_c,
/// so per group and query head the kernel forms q~ = scale * q * s and the bias scale * q.m once,
/// then each token costs one unpack of its codes x (a 256-entry table, 8/b codes a byte) and one
/// dot product per query head. Values, per token: v_c = m_k + s_k x_c (k = channel group of c) is
/// rebuilt from the codes into a d-float register tile and added to the g heads' outputs.
/// Float32 (residual) rows go through the exact kernels of `Attention`.
enum QuantizedAttention {
    /// Same contract as `Attention.decode`; records the bytes read in `store.lastReadBytes`.
    static func decode(q: UnsafePointer<Float>, groups g: Int, store: HeadStore, quantized qs: QuantizedStore,
                       indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> Int {
        let d = store.headDim, n = indices?.count ?? store.count, qn = qs.count
        out.initialize(repeating: 0, count: g * d)
        store.lastReadBytes = (0, 0)
        guard n > 0 else { return 0 }
        let idx = indices?.baseAddress
        @inline(__always) func row(_ j: Int) -> Int { idx.map { Int($0[j]) } ?? j }
        let ul = qs.unpackLength
        let x = UnsafeMutablePointer<Float>.allocate(capacity: ul + d)     // unpacked codes
        let v = UnsafeMutablePointer<Float>.allocate(capacity: d)          // dequantized value row
        let qt = UnsafeMutablePointer<Float>.allocate(capacity: g * d)     // q~ = scale * q * s, per head
        var bias = [Float](repeating: 0, count: g)
        defer { x.deallocate(); v.deallocate(); qt.deallocate() }
        let fpRow = d * MemoryLayout<Float>.stride
        let keyGroupBytes = 2 * d * MemoryLayout<Float>.stride
        let valueRowBytes = qs.rowBytes + 2 * qs.valueGroups * MemoryLayout<Float>.stride
        var keyBytes = 0, valueBytes = 0
        // Scores.
        var grp = -1, grpEnd = 0
        let fpKeys = store.keys, fpValues = store.values
        qs.keyParams.withUnsafeBufferPointer { kp in
            for j in 0..<n {
                let i = row(j)
                if i < qn {
                    if grp < 0 || i >= grpEnd {
                        grp = grp < 0 ? qs.group(of: i) : grp
                        while qs.groupStarts[grp + 1] <= i { grp += 1 }
                        grpEnd = qs.groupStarts[grp + 1]
                        let m = kp.baseAddress! + grp * 2 * d, s = m + d
                        for h in 0..<g {
                            let qh = q + h * d, t = qt + h * d
                            var b: Float = 0
                            for c in 0..<d { t[c] = scale * qh[c] * s[c]; b += qh[c] * m[c] }
                            bias[h] = scale * b
                        }
                        keyBytes += keyGroupBytes
                    }
                    qs.unpack(qs.keyCodes + i * qs.rowBytes, into: x)
                    Attention.scoreOne(x, q: qt, g: g, d: d, scale: 1, probs: probs + j, stride: n)
                    for h in 0..<g { probs[h * n + j] += bias[h] }
                    keyBytes += qs.rowBytes
                } else {
                    Attention.scoreOne(fpKeys + i * d, q: q, g: g, d: d, scale: scale, probs: probs + j, stride: n)
                    keyBytes += fpRow
                }
            }
        }
        for h in 0..<g { Attention.softmax(probs + h * n, count: n) }
        // Values.
        let pv = 2 * qs.valueGroups
        for j in 0..<n {
            let i = row(j)
            if i < qn {
                qs.unpack(qs.valueCodes + i * qs.rowBytes, into: x)
                qs.dequantizeValueRow(codes: x, params: qs.valueParams + i * pv, into: v)
                Attention.accumulateOne(v, probs: probs + j, stride: n, g: g, d: d, out: out)
                valueBytes += valueRowBytes
            } else {
                Attention.accumulateOne(fpValues + i * d, probs: probs + j, stride: n, g: g, d: d, out: out)
                valueBytes += fpRow
            }
        }
        store.lastReadBytes = (keyBytes, valueBytes)
        return n
    }
}
