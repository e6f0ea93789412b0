typealias V8 = SIMD8<Float>

/// Matrix-vector products of stored weight rows (any supported type, F32 included) with a Float32
/// vector: the decode kernels, one row range at a time (callers split rows across threads).
public enum GGMLRowProducts {
    /// Whether `type`'s kernel reads the per-32 sums of x (types with a min: w = d q + m).
    public static func needsBlockSums(_ type: GGMLType) -> Bool { [.q4_1, .q5_1, .q4_K, .q5_K].contains(type) }

    /// Whether `type` has a fused kernel; the others (Q2_K, Q3_K) decode each block into an L1
    /// buffer with KVGGUF's reference decoder first.
    public static func hasFusedKernel(_ type: GGMLType) -> Bool {
        [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K].contains(type)
    }

    /// aux[g] = sum of x[32g ..< 32g + 32] for g < cols / 32 (cols a multiple of 32).
    public static func blockSums(_ x: UnsafePointer<Float>, cols: Int, into aux: UnsafeMutablePointer<Float>) {
        groupSums(x, cols: cols, width: 32, into: aux)
    }

    /// y[r] (=|+=) row r . x for r in `range`; row r starts at w + r * rowBytes and holds `cols`
    /// elements of `type`. aux [cols / 32]: `blockSums(x)` where `needsBlockSums(type)`.
    public static func rows(_ type: GGMLType, _ w: UnsafeRawPointer, rowBytes: Int, range: Range<Int>,
                            x: UnsafePointer<Float>, aux: UnsafePointer<Float>, cols: Int,
                            y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        func run<K: RowKernel>(_: K.Type) {
            K.rows(w, rowBytes: rowBytes, range: range, x: x, aux: aux, cols: cols, y: y, accumulate: accumulate)
        }
        switch type {
        case .f32: run(KernelF32.self)
        case .f16: run(KernelF16.self)
        case .bf16: run(KernelBF16.self)
        case .q8_0: run(KernelQ8_0.self)
        case .q4_0: run(KernelQ4_0.self)
        case .q4_1: run(KernelQ4_1.self)
        case .q5_0: run(KernelQ5_0.self)
        case .q5_1: run(KernelQ5_1.self)
        case .q4_K: run(KernelQ4_K.self)
        case .q5_K: run(KernelQ5_K.self)
        case .q6_K: run(KernelQ6_K.self)
        default:
            guard let decoder = type.decoder else { preconditionFailure("\(type.name) cannot be decoded") }
            func generic<D: GGMLBlockDecoder>(_: D.Type) { run(KernelBlocks<D>.self) }
            generic(decoder)
        }
    }

    /// `count` IEEE halves at src to Float32 (8 lanes at a time).
    public static func halfToFloat(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        HalfRows.halfToFloat(src, into: dst, count: count)
    }
    /// `count` bfloat16 values at src to Float32.
    public static func bfloat16ToFloat(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        HalfRows.bfloat16ToFloat(src, into: dst, count: count)
    }
}

/// The dot product of one stored weight row with a Float32 activation vector, for one storage type:
/// the decode (matrix-vector) kernel. Each conforming type decodes its blocks in SIMD registers
/// and multiplies at once; scales are applied once per block (sum_j (d q_j + m) x_j =
/// d sum_j q_j x_j + m sum_j x_j), so results equal the dequantized Float32 row's dot product up
/// to summation order. `aux` holds the sums of x over each 32 elements (computed once per
/// product, `groupSums`), which the types with a min use.
protocol RowKernel {
    /// sum_c W[row, c] x[c] for the row stored at `row`; aux [cols / 32]: block sums of x.
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float
}

extension RowKernel {
    /// y[i] (=|+=) dot(row r0 + i, x) for the rows of `range`; rows are `rowBytes` apart from `w`.
    @inline(__always)
    static func rows(_ w: UnsafeRawPointer, rowBytes: Int, range: Range<Int>, x: UnsafePointer<Float>,
                     aux: UnsafePointer<Float>, cols: Int, y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        if accumulate {
            for r in range { y[r] += dot(w + r * rowBytes, x, aux, cols: cols) }
        } else {
            for r in range { y[r] = dot(w + r * rowBytes, x, aux, cols: cols) }
        }
    }
}

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> V8 { UnsafeRawPointer(p).loadUnaligned(as: V8.self) }

/// Four fp16 values at p as Float32 (one vcvtph2ps from memory: no merge into a live register,
/// which a scalar half load would create).
@inline(__always) func halves4(_ p: UnsafeRawPointer) -> SIMD4<Float> { SIMD4<Float>(p.loadUnaligned(as: SIMD4<Float16>.self)) }

/// Bytes p[o..<o+8] zero-extended to eight 32-bit lanes (vpmovzxbd).
@inline(__always) func bytes8(_ p: UnsafeRawPointer, _ o: Int) -> SIMD8<Int32> {
    SIMD8<Int32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: o, as: SIMD8<UInt8>.self))
}

/// Sums of x over consecutive groups of `width` elements: aux[g] = sum x[g*width ..< (g+1)*width].
@inline(__always)
func groupSums(_ x: UnsafePointer<Float>, cols: Int, width: Int, into aux: UnsafeMutablePointer<Float>) {
    for g in 0..<(cols / width) {
        var s = V8()
        var c = g * width
        while c < (g + 1) * width { s += load8(x + c); c += 8 }
        aux[g] = s.sum()
    }
}

// MARK: - Unquantized types

/// Float32 rows: four 8-lane accumulators.
enum KernelF32: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        let w = row.assumingMemoryBound(to: Float.self)
        var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8()
        var c = 0
        while c + 32 <= cols {
            a0.addProduct(load8(w + c), load8(x + c)); a1.addProduct(load8(w + c + 8), load8(x + c + 8))
            a2.addProduct(load8(w + c + 16), load8(x + c + 16)); a3.addProduct(load8(w + c + 24), load8(x + c + 24))
            c += 32
        }
        while c + 8 <= cols { a0.addProduct(load8(w + c), load8(x + c)); c += 8 }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while c < cols { s += w[c] * x[c]; c += 1 }
        return s
    }
}

/// IEEE half rows: vcvtph2ps from memory (F16C), then FMA.
enum KernelF16: RowKernel {
    @inline(__always) static func eight(_ p: UnsafeRawPointer, _ c: Int) -> V8 {
        V8(p.loadUnaligned(fromByteOffset: 2 * c, as: SIMD8<Float16>.self))
    }
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8()
        var c = 0
        while c + 32 <= cols {
            a0.addProduct(eight(row, c), load8(x + c)); a1.addProduct(eight(row, c + 8), load8(x + c + 8))
            a2.addProduct(eight(row, c + 16), load8(x + c + 16)); a3.addProduct(eight(row, c + 24), load8(x + c + 24))
            c += 32
        }
        while c + 8 <= cols { a0.addProduct(eight(row, c), load8(x + c)); c += 8 }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while c < cols {
            s += Float(Float16(bitPattern: row.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self))) * x[c]
            c += 1
        }
        return s
    }
}

/// bfloat16 rows: the 16 bits shifted into the top of a 32-bit lane are the Float32.
enum KernelBF16: RowKernel {
    @inline(__always) static func eight(_ p: UnsafeRawPointer, _ c: Int) -> V8 {
        let h = SIMD8<UInt32>(truncatingIfNeeded: p.loadUnaligned(fromByteOffset: 2 * c, as: SIMD8<UInt16>.self))
        return unsafeBitCast(h &<< 16, to: V8.self)
    }
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8()
        var c = 0
        while c + 32 <= cols {
            a0.addProduct(eight(row, c), load8(x + c)); a1.addProduct(eight(row, c + 8), load8(x + c + 8))
            a2.addProduct(eight(row, c + 16), load8(x + c + 16)); a3.addProduct(eight(row, c + 24), load8(x + c + 24))
            c += 32
        }
        while c + 8 <= cols { a0.addProduct(eight(row, c), load8(x + c)); c += 8 }
        var s = ((a0 + a1) + (a2 + a3)).sum()
        while c < cols {
            s += Float(bitPattern: UInt32(row.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self)) << 16) * x[c]
            c += 1
        }
        return s
    }
}

/// Any supported ggml block type without a kernel of its own (Q2_K, Q3_K): each
/// block is decoded by KVGGUF's reference decoder into a 256-float stack buffer (L1), then dotted
/// with x. Slower than the fused kernels, but the matrix stays packed.
enum KernelBlocks<D: GGMLBlockDecoder>: RowKernel {
    @inline(__always)
    static func dot(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ aux: UnsafePointer<Float>, cols: Int) -> Float {
        let be = D.elements, bb = D.bytes
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: be) { buf in
            let t = buf.baseAddress!
            var acc = V8()
            var s: Float = 0
            for b in 0..<(cols / be) {
                D.decode(row + b * bb, into: t)
                let xb = x + b * be
                var c = 0
                while c + 8 <= be { acc.addProduct(load8(t + c), load8(xb + c)); c += 8 }
                while c < be { s += t[c] * xb[c]; c += 1 }
            }
            return acc.sum() + s
        }
    }
}

/// Half and bfloat16 rows to Float32 (prefill tiles, embedding rows).
enum HalfRows {
    static func halfToFloat(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count n: Int) {
        var c = 0
        while c + 8 <= n { UnsafeMutableRawPointer(dst + c).storeBytes(of: KernelF16.eight(src, c), as: V8.self); c += 8 }
        while c < n { dst[c] = Float(Float16(bitPattern: src.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self))); c += 1 }
    }
    static func bfloat16ToFloat(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count n: Int) {
        var c = 0
        while c + 8 <= n { UnsafeMutableRawPointer(dst + c).storeBytes(of: KernelBF16.eight(src, c), as: V8.self); c += 8 }
        while c < n { dst[c] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self)) << 16); c += 1 }
    }
}
