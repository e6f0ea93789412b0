/// ggml's 32-element block types (ggml-common.h `block_q4_0` ... `block_q8_0`), decoded as
/// ggml-quants.c `dequantize_row_q4_0` ... `dequantize_row_q8_0`. Scales are fp16. In the 4- and
/// 5-bit types, element j (0..<16) is the low nibble of qs[j] and element j + 16 its high nibble;
/// the 5th bit of element j is bit j of the little-endian u32 qh.
/// Arithmetic order follows the reference (d * q, then + m), with no fused multiply-add.

/// Q4_0, 18 bytes: d (fp16) | qs[16]. w = d * (q - 8), q in 0...15.
public enum BlockQ4_0: GGMLBlockDecoder {
    public static let type = GGMLType.q4_0
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0)
        for j in 0..<16 {
            let q = b.u8(2 + j)
            y[j] = Float(Int32(q & 0x0F) - 8) * d
            y[j + 16] = Float(Int32(q >> 4) - 8) * d
        }
    }
}

/// Q4_1, 20 bytes: d (fp16) | m (fp16) | qs[16]. w = d * q + m, q in 0...15.
public enum BlockQ4_1: GGMLBlockDecoder {
    public static let type = GGMLType.q4_1
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0), m = b.half(2)
        for j in 0..<16 {
            let q = b.u8(4 + j)
            y[j] = Float(q & 0x0F) * d + m
            y[j + 16] = Float(q >> 4) * d + m
        }
    }
}

/// Q5_0, 22 bytes: d (fp16) | qh (u32, the 5th bits) | qs[16]. w = d * (q - 16), q in 0...31.
public enum BlockQ5_0: GGMLBlockDecoder {
    public static let type = GGMLType.q5_0
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0), qh = b.u32(2)
        for j in 0..<16 {
            let q = b.u8(6 + j)
            let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
            let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
            y[j] = Float(Int32((q & 0x0F) | h0) - 16) * d
            y[j + 16] = Float(Int32((q >> 4) | h1) - 16) * d
        }
    }
}

/// Q5_1, 24 bytes: d (fp16) | m (fp16) | qh (u32) | qs[16]. w = d * q + m, q in 0...31.
public enum BlockQ5_1: GGMLBlockDecoder {
    public static let type = GGMLType.q5_1
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0), m = b.half(2), qh = b.u32(4)
        for j in 0..<16 {
            let q = b.u8(8 + j)
            let h0 = UInt8(truncatingIfNeeded: (qh >> UInt32(j)) << 4) & 0x10
            let h1 = UInt8(truncatingIfNeeded: qh >> UInt32(j + 12)) & 0x10
            y[j] = Float((q & 0x0F) | h0) * d + m
            y[j + 16] = Float((q >> 4) | h1) * d + m
        }
    }
}

/// Q8_0, 34 bytes: d (fp16) | qs[32] (int8). w = d * q.
public enum BlockQ8_0: GGMLBlockDecoder {
    public static let type = GGMLType.q8_0
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        let d = b.half(0)
        for j in 0..<32 { y[j] = Float(b.i8(2 + j)) * d }
    }
}
