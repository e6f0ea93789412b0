/// Matrix-vector kernels of ggml's K-quants (256-element super-blocks; layouts: KVGGUF
/// Dequantize+KQuants.swift, ggml-common.h). Codes are widened to 32-bit lanes in registers as in
/// the legacy kernels; each sub-block's partial sum is scaled once by its decoded scale, and the
/// mins of Q4_K / Q5_K are applied through the per-32 sums of x (aux):
/// sum_j ((d sc) q_j - dmin m) x_j = (d sc) q.x - (dmin m) sum_j x_j.

/// The 6-bit scales and mins of the 8 sub-blocks of a Q4_K / Q5_K super-block (12 bytes at s,
/// ggml `get_scale_min_k4`).
@inline(__always)
func scalesMinsK4(_ s: UnsafeRawPointer) -> (scales: SIMD8<Float>, mins: SIMD8<Float>) {
    var sc = SIMD8<Float>(), mn = SIMD8<Float>()
    for j in 0..<4 {
        sc[j] = Float(s.load(fromByteOffset: j, as: UInt8.self) & 63)
        mn[j] = Float(s.load(fromByteOffset: j + 4, as: UInt8.self) & 63)
    }
    for j in 4..<8 {
        let a = s.load(fromByteOffset: j + 4, as: UInt8.self)
        sc[j] = Float((a & 0x0F) | ((s.load(fromByteOffset: j - 4, as: UInt8.self) >> 6) << 4))
        mn[j] = Float((a >> 4) | ((s.load(fromByteOffset: j, as: UInt8.self) >> 6) << 4))
    }
    return (sc, mn)
}

/// Q4_K (144 bytes: d | dmin | scales[12] | qs[128]): for chunk c (64 elements, qs[32c..<32c+32]),
/// the low nibbles are elements 64c..<64c+32 (sub-block 2c), the high nibbles the next 32 (2c+1).
enum KernelQ4_K: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ sx: UnsafePointer<Float>, cols: Int) -> Float {
        var a0 = V8(), a1 = V8(), mins = V8()
        let mask = SIMD8<Int32>(repeating: 15)
        for sb in 0..<(cols / 256) {
            let p = row + sb * 144
            let dm = halves4(p)
            let (sc, mn) = scalesMinsK4(p + 4)
            let ds = sc * dm[0]
            mins.addProduct(mn * dm[1], load8(sx + sb * 8))
            for c in 0..<4 {
                let qs = p + 16 + 32 * c, xb = x + sb * 256 + 64 * c
                let q0 = bytes8(qs, 0), q1 = bytes8(qs, 8), q2 = bytes8(qs, 16), q3 = bytes8(qs, 24)
                var lo = V8(q0 & mask) * load8(xb)
                lo.addProduct(V8(q1 & mask), load8(xb + 8))
                lo.addProduct(V8(q2 & mask), load8(xb + 16))
                lo.addProduct(V8(q3 & mask), load8(xb + 24))
                var hi = V8(q0 &>> 4) * load8(xb + 32)
                hi.addProduct(V8(q1 &>> 4), load8(xb + 40))
                hi.addProduct(V8(q2 &>> 4), load8(xb + 48))
                hi.addProduct(V8(q3 &>> 4), load8(xb + 56))
                a0.addProduct(V8(repeating: ds[2 * c]), lo)
                a1.addProduct(V8(repeating: ds[2 * c + 1]), hi)
            }
        }
        return (a0 + a1).sum() - mins.sum()
    }
}

/// Q5_K (176 bytes: d | dmin | scales[12] | qh[32] | qs[128]): Q4_K with a 5th bit, bit 2c of qh[l]
/// for the low-nibble element l of chunk c and bit 2c+1 for the high-nibble one.
enum KernelQ5_K: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ sx: UnsafePointer<Float>, cols: Int) -> Float {
        var a0 = V8(), a1 = V8(), mins = V8()
        let mask = SIMD8<Int32>(repeating: 15), one = SIMD8<Int32>(repeating: 1)
        for sb in 0..<(cols / 256) {
            let p = row + sb * 176
            let dm = halves4(p)
            let (sc, mn) = scalesMinsK4(p + 4)
            let ds = sc * dm[0]
            mins.addProduct(mn * dm[1], load8(sx + sb * 8))
            for c in 0..<4 {
                let qs = p + 48 + 32 * c, xb = x + sb * 256 + 64 * c
                let sl = Int32(2 * c), sh = Int32(2 * c + 1)
                var lo = V8(), hi = V8()
                for k in 0..<4 {
                    let q = bytes8(qs, 8 * k), h = bytes8(p, 16 + 8 * k)
                    lo.addProduct(V8((q & mask) | (((h &>> sl) & one) &<< 4)), load8(xb + 8 * k))
                    hi.addProduct(V8((q &>> 4) | (((h &>> sh) & one) &<< 4)), load8(xb + 32 + 8 * k))
                }
                a0.addProduct(V8(repeating: ds[2 * c]), lo)
                a1.addProduct(V8(repeating: ds[2 * c + 1]), hi)
            }
        }
        return (a0 + a1).sum() - mins.sum()
    }
}

/// Q6_K (210 bytes: ql[128] | qh[64] | scales[16] int8 | d): w = (d sc) (q - 32). For half h
/// (128 elements) and l < 32, with a = ql[64h + l], b = ql[64h + 32 + l], t = qh[32h + l]:
/// element l is a's low nibble | t bits 0-1, l+32 is b's low | bits 2-3, l+64 a's high | bits 4-5,
/// l+96 b's high | bits 6-7; element e of the half has scale 8h + e / 16.
enum KernelQ6_K: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        var a0 = V8(), a1 = V8()
        let m4 = SIMD8<Int32>(repeating: 15), m2 = SIMD8<Int32>(repeating: 3), off = SIMD8<Int32>(repeating: 32)
        for sb in 0..<(cols / 256) {
            let p = row + sb * 210
            let d = halves4(p + 202)[3]           // the fp16 at byte 208 (a 4-lane load that ends with the block)
            for h in 0..<2 {
                let ql = p + 64 * h, qh = p + 128 + 32 * h, xh = x + sb * 256 + 128 * h
                let scales = SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: 192 + 8 * h, as: SIMD8<Int8>.self))
                let ds = V8(scales) * d
                // l in 0..<16 (scale index 0, 2, 4, 6), then 16..<32 (1, 3, 5, 7).
                for part in 0..<2 {
                    var v1 = V8(), v2 = V8(), v3 = V8(), v4 = V8()
                    for k in 0..<2 {
                        let l = 16 * part + 8 * k
                        let a = bytes8(ql, l), b = bytes8(ql, 32 + l), t = bytes8(qh, l)
                        v1.addProduct(V8(((a & m4) | ((t & m2) &<< 4)) &- off), load8(xh + l))
                        v2.addProduct(V8(((b & m4) | (((t &>> 2) & m2) &<< 4)) &- off), load8(xh + 32 + l))
                        v3.addProduct(V8(((a &>> 4) | (((t &>> 4) & m2) &<< 4)) &- off), load8(xh + 64 + l))
                        v4.addProduct(V8(((b &>> 4) | ((t &>> 6) &<< 4)) &- off), load8(xh + 96 + l))
                    }
                    a0.addProduct(V8(repeating: ds[part]), v1)
                    a1.addProduct(V8(repeating: ds[2 + part]), v2)
                    a0.addProduct(V8(repeating: ds[4 + part]), v3)
                    a1.addProduct(V8(repeating: ds[6 + part]), v4)
                }
            }
        }
        return (a0 + a1).sum()
    }
}
