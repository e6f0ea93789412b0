/// Matrix-vector kernels of ggml's 32-element block types (layouts: KVGGUF Dequantize+Legacy.swift,
/// ggml-common.h). Per block, the 16 or 32 code bytes are zero- or sign-extended to 32-bit lanes
/// (vpmovzxbd / vpmovsxbd straight from memory), nibbles split with an and / a shift, converted,
/// and multiplied with x by FMA; the block's scale multiplies the 8-lane partial sum once.
/// Two blocks per iteration feed two accumulators; the fp16 scales of a block are converted as
/// a 4-lane vector from memory. Element j < 16 of a 4-bit block is the low nibble of qs[j], j + 16
/// its high nibble; lanes 0-7 come from qs[0..<8], lanes 8-15 from qs[8..<16].

/// sum_j q_j x_j over one 4-bit block, q_j = nibble - offset (offset 8 for Q4_0, 0 for Q4_1).
@inline(__always)
func nibbleBlockDot(_ qs: UnsafeRawPointer, _ xb: UnsafePointer<Float>, offset: Int32) -> V8 {
    let q0 = bytes8(qs, 0), q1 = bytes8(qs, 8)
    let m = SIMD8<Int32>(repeating: 15), o = SIMD8<Int32>(repeating: offset)
    var v = V8((q0 & m) &- o) * load8(xb)
    v.addProduct(V8((q1 & m) &- o), load8(xb + 8))
    v.addProduct(V8((q0 &>> 4) &- o), load8(xb + 16))
    v.addProduct(V8((q1 &>> 4) &- o), load8(xb + 24))
    return v
}

/// Q4_0 (18 bytes: d | qs[16]): w = d (q - 8).
enum KernelQ4_0: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        let nb = cols / 32
        var a0 = V8(), a1 = V8()
        var b = 0
        while b + 2 <= nb {
            let p = row + b * 18
            let d0 = halves4(p)[0], d1 = halves4(p + 18)[0]
            a0.addProduct(V8(repeating: d0), nibbleBlockDot(p + 2, x + b * 32, offset: 8))
            a1.addProduct(V8(repeating: d1), nibbleBlockDot(p + 20, x + b * 32 + 32, offset: 8))
            b += 2
        }
        if b < nb {
            let p = row + b * 18
            a0.addProduct(V8(repeating: halves4(p)[0]), nibbleBlockDot(p + 2, x + b * 32, offset: 8))
        }
        return (a0 + a1).sum()
    }
}

/// Q4_1 (20 bytes: d | m | qs[16]): w = d q + m, so a row's dot is sum_b d_b (q.x)_b + m_b sx_b
/// with sx_b the sum of x over block b (aux).
enum KernelQ4_1: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ sx: UnsafePointer<Float>, cols: Int) -> Float {
        let nb = cols / 32
        var a0 = V8(), a1 = V8()
        var m0: Float = 0, m1: Float = 0
        var b = 0
        while b + 2 <= nb {
            let p = row + b * 20
            let s0 = halves4(p), s1 = halves4(p + 20)
            a0.addProduct(V8(repeating: s0[0]), nibbleBlockDot(p + 4, x + b * 32, offset: 0))
            a1.addProduct(V8(repeating: s1[0]), nibbleBlockDot(p + 24, x + b * 32 + 32, offset: 0))
            m0 += s0[1] * sx[b]
            m1 += s1[1] * sx[b + 1]
            b += 2
        }
        if b < nb {
            let p = row + b * 20
            let s0 = halves4(p)
            a0.addProduct(V8(repeating: s0[0]), nibbleBlockDot(p + 4, x + b * 32, offset: 0))
            m0 += s0[1] * sx[b]
        }
        return (a0 + a1).sum() + (m0 + m1)
    }
}

/// Q8_0 (34 bytes: d | qs[32] int8): w = d q.
enum KernelQ8_0: RowKernel {
    @inline(__always)
    static func block(_ p: UnsafeRawPointer, _ xb: UnsafePointer<Float>) -> V8 {
        @inline(__always) func s8(_ o: Int) -> V8 {
            V8(SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: o, as: SIMD8<Int8>.self)))
        }
        var v = s8(2) * load8(xb)
        v.addProduct(s8(10), load8(xb + 8))
        v.addProduct(s8(18), load8(xb + 16))
        v.addProduct(s8(26), load8(xb + 24))
        return v
    }
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        let nb = cols / 32
        var a0 = V8(), a1 = V8()
        var b = 0
        while b + 2 <= nb {
            let p = row + b * 34
            a0.addProduct(V8(repeating: halves4(p)[0]), block(p, x + b * 32))
            a1.addProduct(V8(repeating: halves4(p + 34)[0]), block(p + 34, x + b * 32 + 32))
            b += 2
        }
        if b < nb {
            let p = row + b * 34
            a0.addProduct(V8(repeating: halves4(p)[0]), block(p, x + b * 32))
        }
        return (a0 + a1).sum()
    }
}

/// The 5th bits of a Q5 block's lanes: bit (first + lane) of qh, times 16.
@inline(__always)
func fifthBits(_ qh: UInt32, first: UInt32) -> SIMD8<Int32> {
    let shifts = SIMD8<UInt32>(0, 1, 2, 3, 4, 5, 6, 7) &+ first
    return SIMD8<Int32>(truncatingIfNeeded: ((SIMD8<UInt32>(repeating: qh) &>> shifts) & 1) &<< 4)
}

/// sum_j q_j x_j over one 5-bit block (qh: the 5th bits), q_j = code - offset.
@inline(__always)
func q5BlockDot(_ qs: UnsafeRawPointer, qh: UInt32, _ xb: UnsafePointer<Float>, offset: Int32) -> V8 {
    let q0 = bytes8(qs, 0), q1 = bytes8(qs, 8)
    let m = SIMD8<Int32>(repeating: 15), o = SIMD8<Int32>(repeating: offset)
    var v = V8(((q0 & m) | fifthBits(qh, first: 0)) &- o) * load8(xb)
    v.addProduct(V8(((q1 & m) | fifthBits(qh, first: 8)) &- o), load8(xb + 8))
    v.addProduct(V8(((q0 &>> 4) | fifthBits(qh, first: 16)) &- o), load8(xb + 16))
    v.addProduct(V8(((q1 &>> 4) | fifthBits(qh, first: 24)) &- o), load8(xb + 24))
    return v
}

/// Q5_0 (22 bytes: d | qh u32 | qs[16]): w = d (q - 16).
enum KernelQ5_0: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        var acc = V8()
        for b in 0..<(cols / 32) {
            let p = row + b * 22
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
            acc.addProduct(V8(repeating: halves4(p)[0]), q5BlockDot(p + 6, qh: qh, x + b * 32, offset: 16))
        }
        return acc.sum()
    }
}

/// Q5_1 (24 bytes: d | m | qh u32 | qs[16]): w = d q + m.
enum KernelQ5_1: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ sx: UnsafePointer<Float>, cols: Int) -> Float {
        var acc = V8()
        var ms: Float = 0
        for b in 0..<(cols / 32) {
            let p = row + b * 24
            let s = halves4(p)
            let qh = UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt32.self))
            acc.addProduct(V8(repeating: s[0]), q5BlockDot(p + 8, qh: qh, x + b * 32, offset: 0))
            ms += s[1] * sx[b]
        }
        return acc.sum() + ms
    }
}
