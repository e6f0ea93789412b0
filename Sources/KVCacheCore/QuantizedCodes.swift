/// How a row of packed codes yields the codes of 16 consecutive channels (channel c at byte
/// c / (8/b), bits (c % (8/b)) * b, as `QuantizedStore` packs them) as floats, each lane times a
/// fixed power of two: lane l of a chunk holds code * 2^e_l, and `laneFactors` holds 2^-e_l. The
/// bytes are broadcast to eight 32-bit lanes and masked in place (no per-lane variable shift, which
/// costs three micro-ops on the baseline x86 target); the caller folds the exact power-of-two
/// factors into the query (keys) or applies them once to the summed outputs (values).
protocol CodeLayout {
    /// Codes of channels c..<c+8 and c+8..<c+16 (c % 16 == 0), lane l scaled by 1 / laneFactors[l].
    static func unpack16(_ row: UnsafePointer<UInt8>, channel c: Int) -> (SIMD8<Float>, SIMD8<Float>)
    static var laneFactors: SIMD8<Float> { get }
}

enum Codes2: CodeLayout {
    @inline(__always) static var masks: SIMD8<Int32> { SIMD8(3, 3 << 2, 3 << 4, 3 << 6, 3 << 8, 3 << 10, 3 << 12, 3 << 14) }
    @inline(__always) static var laneFactors: SIMD8<Float> {
        SIMD8(1, 0x1p-2, 0x1p-4, 0x1p-6, 0x1p-8, 0x1p-10, 0x1p-12, 0x1p-14)
    }
    @inline(__always)
    static func unpack16(_ row: UnsafePointer<UInt8>, channel c: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        // 16 codes in 32 bits: channels c..<c+8 in the low 16 bits, c+8..<c+16 in the high 16.
        let w = SIMD8<Int32>(repeating: Int32(bitPattern: UnsafeRawPointer(row + c / 4).loadUnaligned(as: UInt32.self).littleEndian))
        let m = masks
        return (SIMD8<Float>(w & m), SIMD8<Float>((w &>> 16) & m))
    }
}

enum Codes4: CodeLayout {
    @inline(__always) static var masks: SIMD8<Int32> { SIMD8(0xF, 0xF << 4, 0xF << 8, 0xF << 12, 0xF, 0xF << 4, 0xF << 8, 0xF << 12) }
    @inline(__always) static var laneFactors: SIMD8<Float> {
        SIMD8(1, 0x1p-4, 0x1p-8, 0x1p-12, 1, 0x1p-4, 0x1p-8, 0x1p-12)
    }
    /// 8 codes in 32 bits: lanes 0-3 from the low 16 bits, lanes 4-7 from the high 16 (shifted down).
    @inline(__always)
    static func eight(_ p: UnsafeRawPointer) -> SIMD8<Float> {
        let w = SIMD8<Int32>(repeating: Int32(bitPattern: p.loadUnaligned(as: UInt32.self).littleEndian))
        var t = w &>> 16
        t.replace(with: w, where: SIMDMask(SIMD8<Int32>(-1, -1, -1, -1, 0, 0, 0, 0)))
        return SIMD8<Float>(t & masks)
    }
    @inline(__always)
    static func unpack16(_ row: UnsafePointer<UInt8>, channel c: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        let p = UnsafeRawPointer(row + c / 2)
        return (eight(p), eight(p + 4))
    }
}

enum Codes8: CodeLayout {
    @inline(__always) static var laneFactors: SIMD8<Float> { SIMD8(repeating: 1) }
    @inline(__always)
    static func unpack16(_ row: UnsafePointer<UInt8>, channel c: Int) -> (SIMD8<Float>, SIMD8<Float>) {
        let p = UnsafeRawPointer(row + c)
        let b0 = p.loadUnaligned(as: SIMD8<UInt8>.self), b1 = p.loadUnaligned(fromByteOffset: 8, as: SIMD8<UInt8>.self)
        return (SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: b0)), SIMD8<Float>(SIMD8<Int32>(truncatingIfNeeded: b1)))
    }
}
