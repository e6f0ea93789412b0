/// ggml's K-quants: super-blocks of 256 elements (QK_K) split into sub-blocks of 16 or 32 with
/// their own (quantized) scales (ggml-common.h `block_q2_K` ... `block_q6_K`), decoded as
/// ggml-quants.c `dequantize_row_q2_K` ... `dequantize_row_q6_K`: same element order, same
/// float32 products and order of operations (no fused multiply-add).

/// The 6-bit scale and min of 32-element sub-block j (0..<8) of Q4_K / Q5_K, packed in 12 bytes
/// (ggml `get_scale_min_k4`): j < 4: scale = s[j] & 63, min = s[j+4] & 63; otherwise the low
/// 4 bits come from s[j+4] (scale: low nibble, min: high nibble) and the top 2 bits from the top
/// bits of s[j-4] (scale) and s[j] (min).
@inline(__always)
func scaleMinK4(_ j: Int, _ s: UnsafeRawPointer) -> (scale: Float, min: Float) {
    if j < 4 { return (Float(s.u8(j) & 63), Float(s.u8(j + 4) & 63)) }
    let sc = (s.u8(j + 4) & 0x0F) | ((s.u8(j - 4) >> 6) << 4)
    let m = (s.u8(j + 4) >> 4) | ((s.u8(j) >> 6) << 4)
    return (Float(sc), Float(m))
}

/// Q2_K, 84 bytes: scales[16] (low nibble: scale, high nibble: min, per 16 elements) | qs[64]
/// (2-bit codes) | d (fp16) | dmin (fp16). w = (d * sc) * q - dmin * m.
/// Element order: for each half h (128 elements, qs[32h..<32h+32]) and shift s = 0, 2, 4, 6: 16
/// elements from bits s of qs[32h + l], then 16 from qs[32h + 16 + l].
public enum BlockQ2_K: GGMLBlockDecoder {
    public static let type = GGMLType.q2_K
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(80), dmin = b.half(82)
        var out = 0, sub = 0
        for h in 0..<2 {
            let q = 16 + 32 * h
            for shift in stride(from: 0, to: 8, by: 2) {
                for half in 0..<2 {
                    let sc = b.u8(sub); sub += 1
                    let dl = d * Float(sc & 0x0F), ml = dmin * Float(sc >> 4)
                    for l in 0..<16 {
                        y[out + l] = dl * Float((b.u8(q + 16 * half + l) >> UInt8(shift)) & 3) - ml
                    }
                    out += 16
                }
            }
        }
    }
}

/// Q3_K, 110 bytes: hmask[32] (the 3rd bit, inverted: a clear bit subtracts 4) | qs[64] (low 2
/// bits) | scales[12] (16 six-bit scales, offset by 32) | d (fp16). w = (d * (sc - 32)) * q,
/// q = low2 - (hmask bit ? 0 : 4). Same element order as Q2_K; hmask bit k (k = 4h + shift/2)
/// of hmask[l] / hmask[16 + l] belongs to the same elements.
/// Scale i (0..<16): low 4 bits from scales[i] (i < 8) or scales[i-8] >> 4, top 2 bits from
/// scales[8 + i % 4] >> (2 * (i / 4)).
public enum BlockQ3_K: GGMLBlockDecoder {
    public static let type = GGMLType.q3_K
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let dAll = b.half(108)
        let s = b + 96
        var out = 0, sub = 0
        var mask: UInt8 = 1
        for h in 0..<2 {
            let q = 32 + 32 * h
            for shift in stride(from: 0, to: 8, by: 2) {
                for half in 0..<2 {
                    let lo = sub < 8 ? s.u8(sub) & 0x0F : s.u8(sub - 8) >> 4
                    let hi = (s.u8(8 + sub % 4) >> UInt8(2 * (sub / 4))) & 3
                    let sc = Int32(lo | hi << 4) - 32
                    sub += 1
                    let dl = dAll * Float(sc)
                    for l in 0..<16 {
                        let idx = 16 * half + l
                        let low = Int32((b.u8(q + idx) >> UInt8(shift)) & 3)
                        let high: Int32 = b.u8(idx) & mask != 0 ? 0 : 4
                        y[out + l] = dl * Float(low - high)
                    }
                    out += 16
                }
                mask <<= 1
            }
        }
    }
}

/// Q4_K, 144 bytes: d (fp16) | dmin (fp16) | scales[12] (eight 6-bit scale/min pairs,
/// `scaleMinK4`) | qs[128]. For each 64 elements (qs[32c..<32c+32]): 32 from the low nibbles with
/// pair 2c, then 32 from the high nibbles with pair 2c+1. w = (d * sc) * q - dmin * m.
public enum BlockQ4_K: GGMLBlockDecoder {
    public static let type = GGMLType.q4_K
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0), dmin = b.half(2)
        let s = b + 4
        for c in 0..<4 {
            let (s1, m1) = scaleMinK4(2 * c, s), (s2, m2) = scaleMinK4(2 * c + 1, s)
            let d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2
            let q = 16 + 32 * c, o = 64 * c
            for l in 0..<32 {
                let v = b.u8(q + l)
                y[o + l] = d1 * Float(v & 0x0F) - mm1
                y[o + 32 + l] = d2 * Float(v >> 4) - mm2
            }
        }
    }
}

/// Q5_K, 176 bytes: d (fp16) | dmin (fp16) | scales[12] (as Q4_K) | qh[32] | qs[128]. As Q4_K
/// with a 5th bit: for chunk c, bit 2c of qh[l] (low-nibble elements) and bit 2c+1 (high).
/// w = (d * sc) * q - dmin * m, q in 0...31.
public enum BlockQ5_K: GGMLBlockDecoder {
    public static let type = GGMLType.q5_K
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0), dmin = b.half(2)
        let s = b + 4
        for c in 0..<4 {
            let (s1, m1) = scaleMinK4(2 * c, s), (s2, m2) = scaleMinK4(2 * c + 1, s)
            let d1 = d * s1, mm1 = dmin * m1, d2 = d * s2, mm2 = dmin * m2
            let u1 = UInt8(1) << UInt8(2 * c), u2 = UInt8(2) << UInt8(2 * c)
            let q = 48 + 32 * c, o = 64 * c
            for l in 0..<32 {
                let v = b.u8(q + l), h = b.u8(16 + l)
                y[o + l] = d1 * Float((v & 0x0F) + (h & u1 != 0 ? 16 : 0)) - mm1
                y[o + 32 + l] = d2 * Float((v >> 4) + (h & u2 != 0 ? 16 : 0)) - mm2
            }
        }
    }
}

/// Q6_K, 210 bytes: ql[128] (low 4 bits) | qh[64] (high 2 bits) | scales[16] (int8, per 16
/// elements) | d (fp16). w = (d * sc) * (q - 32), q in 0...63. For each half h (128 elements,
/// ql[64h..<64h+64], qh[32h..<32h+32]) and l < 32: element l from ql[l] low nibble + qh bits 0-1,
/// l+32 from ql[l+32] low + bits 2-3, l+64 from ql[l] high + bits 4-5, l+96 from ql[l+32] high +
/// bits 6-7; element e of the half uses scale 8h + e / 16.
public enum BlockQ6_K: GGMLBlockDecoder {
    public static let type = GGMLType.q6_K
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(208)
        for h in 0..<2 {
            let ql = 64 * h, qh = 128 + 32 * h, sc = 192 + 8 * h, o = 128 * h
            for l in 0..<32 {
                let isc = l / 16
                let a = b.u8(ql + l), c = b.u8(ql + 32 + l), hb = b.u8(qh + l)
                let q1 = Int32((a & 0x0F) | ((hb & 3) << 4)) - 32
                let q2 = Int32((c & 0x0F) | (((hb >> 2) & 3) << 4)) - 32
                let q3 = Int32((a >> 4) | (((hb >> 4) & 3) << 4)) - 32
                let q4 = Int32((c >> 4) | (((hb >> 6) & 3) << 4)) - 32
                y[o + l] = d * Float(b.i8(sc + isc)) * Float(q1)
                y[o + 32 + l] = d * Float(b.i8(sc + isc + 2)) * Float(q2)
                y[o + 64 + l] = d * Float(b.i8(sc + isc + 4)) * Float(q3)
                y[o + 96 + l] = d * Float(b.i8(sc + isc + 6)) * Float(q4)
            }
        }
    }
}
