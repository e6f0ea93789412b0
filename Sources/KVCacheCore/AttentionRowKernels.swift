import CPrefetch
import Foundation
import KVTensor

/// The per-row kernels of `Attention.decode` (scores, value accumulation, softmax pieces) and the
/// row maps that tell the kernels which store rows to read.
extension Attention {
    /// Prefetches every 64-byte line of a row of d elements.
    @inline(__always)
    static func prefetchRow<E: KVElement>(_ p: UnsafePointer<E>, _ d: Int) {
        let raw = UnsafeRawPointer(p), bytes = d * MemoryLayout<E>.stride
        var i = 0
        while i < bytes { kv_prefetch(raw + i); i += 64 }
    }

    /// Prefetches every 64-byte line of a row of d elements into the outer caches (`kv_prefetch_far`).
    @inline(__always)
    static func prefetchRowFar<E: KVElement>(_ p: UnsafePointer<E>, _ d: Int) {
        let raw = UnsafeRawPointer(p), bytes = d * MemoryLayout<E>.stride
        var i = 0
        while i < bytes { kv_prefetch_far(raw + i); i += 64 }
    }

    typealias V8 = SIMD8<Float>

    /// Sum of 8 lanes as a tree ((x0+x4)+(x2+x6)) + ((x1+x5)+(x3+x7)): a few shuffles and three
    /// dependent adds, where `SIMD.sum()` chains seven scalar adds (strict left-to-right order).
    /// Used by the KIVI kernel; the Float32 kernels keep `.sum()` (memory-bound: a tree measured no
    /// faster there, and keeping it keeps their results unchanged).
    @inline(__always)
    static func hsum(_ v: V8) -> Float {
        let h = v.lowHalf + v.highHalf, q = h.lowHalf + h.highHalf
        return q[0] + q[1]
    }

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ i: Int) -> V8 { UnsafeRawPointer(p + i).loadUnaligned(as: V8.self) }

    /// One row's score for every head: per head two accumulators (even and odd 8-float chunks),
    /// summed, then the scalar tail. Heads go four at a time with the chunk loop outside, so each
    /// key chunk is loaded once for the four; `scoreFour` computes exactly the same per row.
    @inline(__always)
    static func scoreOne<E: KVElement>(_ k: UnsafePointer<E>, q: UnsafePointer<Float>, g: Int, d: Int, scale: Float,
                         probs: UnsafeMutablePointer<Float>, stride: Int) {
        let d8 = d & ~7
        var h = 0
        while h + 4 <= g {
            let q0 = q + h * d, q1 = q0 + d, q2 = q1 + d, q3 = q2 + d
            var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8(), b0 = V8(), b1 = V8(), b2 = V8(), b3 = V8()
            var c = 0
            while c + 16 <= d8 {
                let ka = E.load8(k, c), kb = E.load8(k, c + 8)
                a0.addProduct(load(q0, c), ka); b0.addProduct(load(q0, c + 8), kb)
                a1.addProduct(load(q1, c), ka); b1.addProduct(load(q1, c + 8), kb)
                a2.addProduct(load(q2, c), ka); b2.addProduct(load(q2, c + 8), kb)
                a3.addProduct(load(q3, c), ka); b3.addProduct(load(q3, c + 8), kb)
                c += 16
            }
            if c < d8 {
                let ka = E.load8(k, c)
                a0.addProduct(load(q0, c), ka); a1.addProduct(load(q1, c), ka)
                a2.addProduct(load(q2, c), ka); a3.addProduct(load(q3, c), ka)
                c += 8
            }
            var s0 = (a0 + b0).sum(), s1 = (a1 + b1).sum(), s2 = (a2 + b2).sum(), s3 = (a3 + b3).sum()
            while c < d {
                s0 = s0.addingProduct(q0[c], k[c].float); s1 = s1.addingProduct(q1[c], k[c].float)
                s2 = s2.addingProduct(q2[c], k[c].float); s3 = s3.addingProduct(q3[c], k[c].float)
                c += 1
            }
            probs[h * stride] = s0 * scale; probs[(h + 1) * stride] = s1 * scale
            probs[(h + 2) * stride] = s2 * scale; probs[(h + 3) * stride] = s3 * scale
            h += 4
        }
        while h < g {
            let qh = q + h * d
            var a = V8(), b = V8()
            var c = 0
            while c + 16 <= d8 { a.addProduct(load(qh, c), E.load8(k, c)); b.addProduct(load(qh, c + 8), E.load8(k, c + 8)); c += 16 }
            if c < d8 { a.addProduct(load(qh, c), E.load8(k, c)); c += 8 }
            var s = (a + b).sum()
            while c < d { s = s.addingProduct(qh[c], k[c].float); c += 1 }
            probs[h * stride] = s * scale
            h += 1
        }
    }

    @inline(__always)
    static func scoreFour<E: KVElement>(_ k0: UnsafePointer<E>, _ k1: UnsafePointer<E>, _ k2: UnsafePointer<E>, _ k3: UnsafePointer<E>,
                          q: UnsafePointer<Float>, g: Int, d: Int, scale: Float, probs: UnsafeMutablePointer<Float>, stride: Int) {
        let d8 = d & ~7
        for h in 0..<g {
            let qh = q + h * d
            // Two accumulators per row (even and odd chunks): eight independent FMA chains.
            var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8(), b0 = V8(), b1 = V8(), b2 = V8(), b3 = V8()
            var c = 0
            while c + 16 <= d8 {
                let qa = load(qh, c), qb = load(qh, c + 8)
                a0.addProduct(qa, E.load8(k0, c)); a1.addProduct(qa, E.load8(k1, c))
                a2.addProduct(qa, E.load8(k2, c)); a3.addProduct(qa, E.load8(k3, c))
                b0.addProduct(qb, E.load8(k0, c + 8)); b1.addProduct(qb, E.load8(k1, c + 8))
                b2.addProduct(qb, E.load8(k2, c + 8)); b3.addProduct(qb, E.load8(k3, c + 8))
                c += 16
            }
            if c < d8 {
                let qa = load(qh, c)
                a0.addProduct(qa, E.load8(k0, c)); a1.addProduct(qa, E.load8(k1, c))
                a2.addProduct(qa, E.load8(k2, c)); a3.addProduct(qa, E.load8(k3, c))
                c += 8
            }
            var s0 = (a0 + b0).sum(), s1 = (a1 + b1).sum(), s2 = (a2 + b2).sum(), s3 = (a3 + b3).sum()
            while c < d {
                s0 = s0.addingProduct(qh[c], k0[c].float); s1 = s1.addingProduct(qh[c], k1[c].float)
                s2 = s2.addingProduct(qh[c], k2[c].float); s3 = s3.addingProduct(qh[c], k3[c].float)
                c += 1
            }
            let p = probs + h * stride
            p[0] = s0 * scale; p[1] = s1 * scale; p[2] = s2 * scale; p[3] = s3 * scale
        }
    }

    /// out[h] += p[h, j] * v_j for one row (fused multiply-adds), heads four at a time so each
    /// value chunk is loaded once for the four. `accumulateBlock` adds rows in the same order with
    /// the same operations, keeping the output chunks in registers.
    @inline(__always)
    static func accumulateOne<E: KVElement>(_ v: UnsafePointer<E>, probs p: UnsafePointer<Float>, stride: Int, g: Int, d: Int,
                              out: UnsafeMutablePointer<Float>) {
        let d8 = d & ~7
        var h = 0
        while h + 4 <= g {
            let w0 = V8(repeating: p[h * stride]), w1 = V8(repeating: p[(h + 1) * stride])
            let w2 = V8(repeating: p[(h + 2) * stride]), w3 = V8(repeating: p[(h + 3) * stride])
            let o0 = out + h * d, o1 = o0 + d, o2 = o1 + d, o3 = o2 + d
            var c = 0
            while c < d8 {
                let vc = E.load8(v, c)
                var x0 = load(o0, c), x1 = load(o1, c), x2 = load(o2, c), x3 = load(o3, c)
                x0.addProduct(w0, vc); x1.addProduct(w1, vc); x2.addProduct(w2, vc); x3.addProduct(w3, vc)
                UnsafeMutableRawPointer(o0 + c).storeBytes(of: x0, as: V8.self)
                UnsafeMutableRawPointer(o1 + c).storeBytes(of: x1, as: V8.self)
                UnsafeMutableRawPointer(o2 + c).storeBytes(of: x2, as: V8.self)
                UnsafeMutableRawPointer(o3 + c).storeBytes(of: x3, as: V8.self)
                c += 8
            }
            while c < d {
                o0[c] = o0[c].addingProduct(w0[0], v[c].float); o1[c] = o1[c].addingProduct(w1[0], v[c].float)
                o2[c] = o2[c].addingProduct(w2[0], v[c].float); o3[c] = o3[c].addingProduct(w3[0], v[c].float)
                c += 1
            }
            h += 4
        }
        while h < g {
            let w = V8(repeating: p[h * stride]), o = out + h * d
            var c = 0
            while c < d8 {
                var acc = load(o, c)
                acc.addProduct(w, E.load8(v, c))
                UnsafeMutableRawPointer(o + c).storeBytes(of: acc, as: V8.self)
                c += 8
            }
            while c < d { o[c] = o[c].addingProduct(w[0], v[c].float); c += 1 }
            h += 1
        }
    }

    /// Four gathered rows added in order (per element the same fused multiply-adds as row by row),
    /// per head, with the output chunk held in a register over the four.
    @inline(__always)
    static func accumulateFour<E: KVElement>(_ v0: UnsafePointer<E>, _ v1: UnsafePointer<E>, _ v2: UnsafePointer<E>, _ v3: UnsafePointer<E>,
                               probs p: UnsafePointer<Float>, stride: Int, g: Int, d: Int, out: UnsafeMutablePointer<Float>) {
        let d8 = d & ~7
        for h in 0..<g {
            let ph = p + h * stride
            let w0 = V8(repeating: ph[0]), w1 = V8(repeating: ph[1]), w2 = V8(repeating: ph[2]), w3 = V8(repeating: ph[3])
            let o = out + h * d
            var c = 0
            while c < d8 {
                var acc = load(o, c)
                acc.addProduct(w0, E.load8(v0, c)); acc.addProduct(w1, E.load8(v1, c))
                acc.addProduct(w2, E.load8(v2, c)); acc.addProduct(w3, E.load8(v3, c))
                UnsafeMutableRawPointer(o + c).storeBytes(of: acc, as: V8.self)
                c += 8
            }
            while c < d {
                var x = o[c]
                x = x.addingProduct(w0[0], v0[c].float); x = x.addingProduct(w1[0], v1[c].float)
                x = x.addingProduct(w2[0], v2[c].float); x = x.addingProduct(w3[0], v3[c].float)
                o[c] = x; c += 1
            }
        }
    }

    /// out[h] += sum over the block's rows r (in order) of p[h, r] * v_r, for `count` rows at
    /// `v[0..<count]`. Per output element the rows are added in order by fused multiply-adds — the
    /// same result as `accumulateOne` row by row — but each output chunk stays in a register over
    /// the block (heads four at a time, two chunks per step: 8 accumulators), so the outputs are
    /// loaded and stored once per block instead of once per row.
    @inline(__always)
    static func accumulateBlock<E: KVElement>(_ v: UnsafePointer<UnsafePointer<E>>, count cnt: Int, probs p: UnsafePointer<Float>, stride: Int,
                                g: Int, d: Int, out: UnsafeMutablePointer<Float>) {
        @inline(__always) func store(_ x: V8, _ o: UnsafeMutablePointer<Float>, _ c: Int) { UnsafeMutableRawPointer(o + c).storeBytes(of: x, as: V8.self) }
        var h = 0
        while h + 4 <= g {
            let p0 = p + h * stride, p1 = p0 + stride, p2 = p1 + stride, p3 = p2 + stride
            let o0 = out + h * d, o1 = o0 + d, o2 = o1 + d, o3 = o2 + d
            var c = 0
            while c + 16 <= d {
                var x0 = load(o0, c), x1 = load(o1, c), x2 = load(o2, c), x3 = load(o3, c)
                var y0 = load(o0, c + 8), y1 = load(o1, c + 8), y2 = load(o2, c + 8), y3 = load(o3, c + 8)
                for r in 0..<cnt {
                    let vr = v[r], va = E.load8(vr, c), vb = E.load8(vr, c + 8)
                    let w0 = V8(repeating: p0[r]), w1 = V8(repeating: p1[r]), w2 = V8(repeating: p2[r]), w3 = V8(repeating: p3[r])
                    x0.addProduct(w0, va); y0.addProduct(w0, vb)
                    x1.addProduct(w1, va); y1.addProduct(w1, vb)
                    x2.addProduct(w2, va); y2.addProduct(w2, vb)
                    x3.addProduct(w3, va); y3.addProduct(w3, vb)
                }
                store(x0, o0, c); store(x1, o1, c); store(x2, o2, c); store(x3, o3, c)
                store(y0, o0, c + 8); store(y1, o1, c + 8); store(y2, o2, c + 8); store(y3, o3, c + 8)
                c += 16
            }
            if c + 8 <= d {
                var x0 = load(o0, c), x1 = load(o1, c), x2 = load(o2, c), x3 = load(o3, c)
                for r in 0..<cnt {
                    let va = E.load8(v[r], c)
                    x0.addProduct(V8(repeating: p0[r]), va); x1.addProduct(V8(repeating: p1[r]), va)
                    x2.addProduct(V8(repeating: p2[r]), va); x3.addProduct(V8(repeating: p3[r]), va)
                }
                store(x0, o0, c); store(x1, o1, c); store(x2, o2, c); store(x3, o3, c)
                c += 8
            }
            while c < d {
                var x0 = o0[c], x1 = o1[c], x2 = o2[c], x3 = o3[c]
                for r in 0..<cnt {
                    let vc = v[r][c].float
                    x0 = x0.addingProduct(p0[r], vc); x1 = x1.addingProduct(p1[r], vc)
                    x2 = x2.addingProduct(p2[r], vc); x3 = x3.addingProduct(p3[r], vc)
                }
                o0[c] = x0; o1[c] = x1; o2[c] = x2; o3[c] = x3
                c += 1
            }
            h += 4
        }
        while h < g {
            let ph = p + h * stride, o = out + h * d
            var c = 0
            while c + 32 <= d {
                var x0 = load(o, c), x1 = load(o, c + 8), x2 = load(o, c + 16), x3 = load(o, c + 24)
                for r in 0..<cnt {
                    let w = V8(repeating: ph[r]), vr = v[r]
                    x0.addProduct(w, E.load8(vr, c)); x1.addProduct(w, E.load8(vr, c + 8))
                    x2.addProduct(w, E.load8(vr, c + 16)); x3.addProduct(w, E.load8(vr, c + 24))
                }
                store(x0, o, c); store(x1, o, c + 8); store(x2, o, c + 16); store(x3, o, c + 24)
                c += 32
            }
            while c + 8 <= d {
                var x0 = load(o, c)
                for r in 0..<cnt { x0.addProduct(V8(repeating: ph[r]), E.load8(v[r], c)) }
                store(x0, o, c)
                c += 8
            }
            while c < d {
                var x = o[c]
                for r in 0..<cnt { x = x.addingProduct(ph[r], v[r][c].float) }
                o[c] = x
                c += 1
            }
            h += 1
        }
    }

    /// x[j] <- e^(x[j] - max x) in place over n floats; returns the sum (the softmax denominator).
    @inline(__always)
    static func expShiftedToMax(_ x: UnsafeMutablePointer<Float>, count n: Int) -> Float {
        let full = n & ~7
        var mv = V8(repeating: -.infinity)
        var i = 0
        while i < full { let v = load(x, i); mv.replace(with: v, where: v .> mv); i += 8 }
        var m = mv.max()
        while i < n { m = max(m, x[i]); i += 1 }
        return expShiftedSum(x, count: n, shift: m)
    }

    /// x[j] <- e^(x[j] - shift) in place over n floats (vectorised); returns their sum.
    @inline(__always)
    static func expShiftedSum(_ x: UnsafeMutablePointer<Float>, count n: Int, shift: Float) -> Float {
        typealias V = SIMD8<Float>
        let raw = UnsafeMutableRawPointer(x)
        let full = n & ~7, mm = V(repeating: shift)
        var sv = V()
        var i = 0
        while i < full {
            let e = exp8(raw.loadUnaligned(fromByteOffset: i * 4, as: V.self) - mm)
            raw.storeBytes(of: e, toByteOffset: i * 4, as: V.self)
            sv += e
            i += 8
        }
        var sum = sv.sum()
        while i < n { let e = exp(x[i] - shift); x[i] = e; sum += e; i += 1 }
        return sum
    }

    /// Softmax in place over n floats with a vectorised exp (max-subtracted, so arguments <= 0).
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        typealias V = SIMD8<Float>
        let raw = UnsafeMutableRawPointer(x)
        let full = n & ~7
        var mv = V(repeating: -.infinity)
        var i = 0
        while i < full { let x = raw.loadUnaligned(fromByteOffset: i * 4, as: V.self); mv.replace(with: x, where: x .> mv); i += 8 }
        var m = mv.max()
        while i < n { m = max(m, x[i]); i += 1 }
        let sum = expShiftedSum(x, count: n, shift: m)
        let inv = V(repeating: 1 / sum)
        i = 0
        while i < full { raw.storeBytes(of: raw.loadUnaligned(fromByteOffset: i * 4, as: V.self) * inv, toByteOffset: i * 4, as: V.self); i += 8 }
        while i < n { x[i] *= inv[0]; i += 1 }
    }

    /// e^x for 8 lanes (`Ops.exp8`, inlined across the module boundary: it is @inlinable).
    @inline(__always)
    static func exp8(_ x: SIMD8<Float>) -> SIMD8<Float> { Ops.exp8(x) }
}

/// Which store row the j-th attended token is: all rows in order, or a gathered index list.
protocol RowMap {
    static var gathers: Bool { get }
    func row(_ j: Int) -> Int
}

struct DenseRows: RowMap {
    static var gathers: Bool { false }
    @inline(__always) func row(_ j: Int) -> Int { j }
}

struct GatheredRows: RowMap {
    let indices: UnsafePointer<Int32>
    static var gathers: Bool { true }
    @inline(__always) func row(_ j: Int) -> Int { Int(indices[j]) }
}
