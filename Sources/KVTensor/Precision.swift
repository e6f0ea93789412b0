/// Conversions between the storage precisions found in checkpoints and Float32.
public enum Precision {
    /// IEEE binary16 -> Float32 (hardware F16C with -target-cpu haswell).
    @inline(__always)
    public static func halfToFloat(_ bits: UInt16) -> Float {
        #if arch(x86_64) || arch(arm64)
        return Float(Float16(bitPattern: bits))
        #else
        return halfToFloatSoftware(bits)
        #endif
    }

    /// Float32 -> IEEE binary16, round to nearest even (hardware F16C with -target-cpu haswell);
    /// beyond the largest half (65504) to infinity, NaN kept a NaN.
    @inline(__always)
    public static func floatToHalf(_ x: Float) -> UInt16 {
        #if arch(x86_64) || arch(arm64)
        return Float16(x).bitPattern
        #else
        return floatToHalfSoftware(x)
        #endif
    }

    /// bfloat16 -> Float32: the upper 16 bits of a Float32.
    @inline(__always)
    public static func bfloat16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Float32 -> bfloat16 with round-to-nearest-even (NaN kept quiet).
    @inline(__always)
    public static func floatToBFloat16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(b >> 16) | 0x40 }
        let rounding = UInt32(0x7FFF) + ((b >> 16) & 1)
        return UInt16((b &+ rounding) >> 16)
    }

    static func halfToFloatSoftware(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F), mant = UInt32(h & 0x3FF)
        if exp == 0 {
            if mant == 0 { return Float(bitPattern: sign) }
            let v = Float(mant) / 1024 / 16384
            return sign != 0 ? -v : v
        }
        if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
        return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    }

    static func floatToHalfSoftware(_ x: Float) -> UInt16 {
        let b = x.bitPattern, sign = UInt16((b >> 16) & 0x8000)
        let e = Int((b >> 23) & 0xFF), m = b & 0x7F_FFFF
        if e == 0xFF { return sign | 0x7C00 | (m != 0 ? 0x200 : 0) }
        let he = e - 127 + 15
        if he >= 31 { return sign | 0x7C00 }
        if he <= 0 {                                               // subnormal half (or zero)
            if he < -10 { return sign }
            let mant = m | 0x80_0000, shift = UInt32(14 - he)
            var h = mant >> shift
            let rem = mant & ((1 << shift) - 1), halfway = UInt32(1) << (shift - 1)
            if rem > halfway || (rem == halfway && h & 1 == 1) { h += 1 }
            return sign | UInt16(h)
        }
        var h = UInt32(he) << 10 | (m >> 13)
        let rem = m & 0x1FFF
        if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) { h += 1 }   // a carry into the exponent is right
        return sign | UInt16(h)
    }
}
