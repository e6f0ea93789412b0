import CPrefetch
import Foundation

/// Decode attention over a KIVI-quantized `HeadStore`, reading the packed codes (never a
/// dequantized copy of the cache).
///
/// Keys, per key group with per-channel mins m and scales s (scale = 1/sqrt(d)):
///   scale * q.k = scale * sum_c q_c (m_c + s_c x_c) = [scale * q.m] + sum_c (scale * q_c s_c) x_c,
/// so per group and query head the kernel forms q~ = scale * q * s and the bias scale * q.m once,
/// then each token costs one unpack of its codes x and one dot product per query head.
/// Values, per token with per channel-group mins m_k and scales s_k:
///   sum_j p_j v_j[c] = sum_j (p_j s_k(j)) x_j[c] + sum_j p_j m_k(j),
/// so each token adds (p s_k) x to the outputs (one fused multiply-add per code) and p m_k to a
/// per-head, per-group sum that is spread over the group's channels once at the end.
///
/// Codes are unpacked in registers, 16 channels at a time: the bytes holding them are broadcast to
/// eight 32-bit lanes, shifted by per-lane amounts and masked (2 and 4 bits), or zero-extended (8
/// bits), then converted to floats — no table, no scratch row. This needs d % 16 == 0 (keys) and
/// G % 8 == 0 (values: one scale per 8-channel chunk); other shapes take the reference path (table
/// unpack into a scratch row, then the Float32 helpers). Float32 (residual) rows use the exact
/// kernels of `Attention`.
enum QuantizedAttention {
    /// `KVRows.decode` of `QuantizedRows`: codes for the quantized tokens, Float32 for the residual.
    static func decode(q: UnsafePointer<Float>, groups g: Int, rows: QuantizedRows,
                       indices: UnsafeBufferPointer<Int32>?, scale: Float,
                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        // The residual's element type, statically (a kernel specialised per element).
        switch rows.residual {
        case let r as Float16Rows: return decode(q: q, groups: g, rows: rows, residual: r, indices: indices, scale: scale, probs: probs, out: out)
        case let r as BFloat16Rows: return decode(q: q, groups: g, rows: rows, residual: r, indices: indices, scale: scale, probs: probs, out: out)
        default: return decode(q: q, groups: g, rows: rows, residual: rows.residual as! Float32Rows, indices: indices, scale: scale, probs: probs, out: out)
        }
    }

    static func decode<F: ElementRows>(q: UnsafePointer<Float>, groups g: Int, rows: QuantizedRows, residual: F,
                                       indices: UnsafeBufferPointer<Int32>?, scale: Float,
                                       probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        switch rows.codes.spec.bits {
        case 2: return decode(Codes2.self, q: q, groups: g, rows: rows, residual: residual, indices: indices, scale: scale, probs: probs, out: out)
        case 4: return decode(Codes4.self, q: q, groups: g, rows: rows, residual: residual, indices: indices, scale: scale, probs: probs, out: out)
        default: return decode(Codes8.self, q: q, groups: g, rows: rows, residual: residual, indices: indices, scale: scale, probs: probs, out: out)
        }
    }

    /// Rows are prefetched this many rows ahead when gathered (codes: one or two cache lines a row).
    static let prefetchDistance = 16

    @inline(never)
    static func decode<C: CodeLayout, F: ElementRows>(_ layout: C.Type, q: UnsafePointer<Float>, groups g: Int, rows: QuantizedRows,
                                                      residual: F, indices: UnsafeBufferPointer<Int32>?, scale: Float,
                                      probs: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) -> RowsRead {
        let qs = rows.codes, d = rows.headDim, n = indices?.count ?? rows.count, qn = qs.count
        out.initialize(repeating: 0, count: g * d)
        guard n > 0 else { return RowsRead(rows: 0, keyBytes: 0, valueBytes: 0) }
        let idx = indices?.baseAddress
        @inline(__always) func row(_ j: Int) -> Int { idx.map { Int($0[j]) } ?? j }
        let G = qs.spec.groupSize, vg = qs.valueGroups, pv = 2 * vg, rb = qs.rowBytes
        let fastKeys = d % 16 == 0, fastValues = fastKeys && G % 8 == 0
        let ul = qs.unpackLength
        let block = Attention.valueBlock
        // Scratch: unpacked codes and a dequantized value row (reference path), q~ [g, d], key
        // biases [g], 1/sum [g], value weights p*s [block, g, vg], value min sums [g, vg].
        let x = UnsafeMutablePointer<Float>.allocate(capacity: ul + d)
        let v = UnsafeMutablePointer<Float>.allocate(capacity: d)
        let qt = UnsafeMutablePointer<Float>.allocate(capacity: g * d)
        let small = UnsafeMutablePointer<Float>.allocate(capacity: 2 * g + block * g * vg + g * vg)
        let codeRows = UnsafeMutablePointer<UnsafePointer<UInt8>>.allocate(capacity: block)
        defer { x.deallocate(); v.deallocate(); qt.deallocate(); small.deallocate(); codeRows.deallocate() }
        let bias = small, inv = bias + g, weights = inv + g, minSums = weights + block * g * vg
        minSums.initialize(repeating: 0, count: g * vg)
        // Quantized rows' value sums, per lane scaled by 1 / the lane factor (see `CodeLayout`).
        let accQ = UnsafeMutablePointer<Float>.allocate(capacity: fastValues ? g * d : 1)
        defer { accQ.deallocate() }
        if fastValues { accQ.initialize(repeating: 0, count: g * d) }
        let fpRow = d * MemoryLayout<F.Element>.stride
        let keyGroupBytes = 2 * d * MemoryLayout<Float>.stride
        let valueRowBytes = rb + pv * MemoryLayout<Float>.stride
        var keyBytes = 0, valueBytes = 0
        // Float (residual) token i is residual row i - qn, in the cache's element type.
        let fpKeys = residual.keys, fpValues = residual.values, keyCodes = qs.keyCodes, valueCodes = qs.valueCodes
        let ahead = prefetchDistance
        // q * scale with the codes' lane factors folded in (see `CodeLayout`), once per call; per key
        // group q~ = that * s.
        let qf = UnsafeMutablePointer<Float>.allocate(capacity: fastKeys ? g * d : 1)
        defer { qf.deallocate() }
        if fastKeys {
            let f = C.laneFactors, sv = V8(repeating: scale)
            for h in 0..<g { var c = 0; while c < d { UnsafeMutableRawPointer(qf + h * d + c).storeBytes(of: sv * load(q + h * d, c) * f, as: V8.self); c += 8 } }
        }
        // Scores.
        var grp = -1, grpEnd = 0
        qs.keyParams.withUnsafeBufferPointer { kp in
            if idx != nil { for t in 0..<min(ahead, n) { prefetchKey(row(t), qn: qn, codes: keyCodes, rowBytes: rb, fp: fpKeys, d: d) } }
            for j in 0..<n {
                if idx != nil && j + ahead < n { prefetchKey(row(j + ahead), qn: qn, codes: keyCodes, rowBytes: rb, fp: fpKeys, d: d) }
                let i = row(j)
                if i < qn {
                    if grp < 0 || i >= grpEnd {
                        grp = grp < 0 ? qs.group(of: i) : grp
                        while qs.groupStarts[grp + 1] <= i { grp += 1 }
                        grpEnd = qs.groupStarts[grp + 1]
                        let m = kp.baseAddress! + grp * 2 * d, s = m + d
                        if fastKeys {
                            for h in 0..<g {
                                let qh = q + h * d, t = qt + h * d, fh = qf + h * d
                                var b = V8()
                                var c = 0
                                while c < d {
                                    UnsafeMutableRawPointer(t + c).storeBytes(of: load(fh, c) * load(s, c), as: V8.self)
                                    b.addProduct(load(qh, c), load(m, c))
                                    c += 8
                                }
                                bias[h] = scale * hsum(b)
                            }
                        } else {
                            for h in 0..<g {
                                let qh = q + h * d, t = qt + h * d
                                var b: Float = 0
                                for c in 0..<d { t[c] = scale * qh[c] * s[c]; b += qh[c] * m[c] }
                                bias[h] = scale * b
                            }
                        }
                        keyBytes += keyGroupBytes
                    }
                    if fastKeys {
                        scoreCodes(C.self, keyCodes + i * rb, q: qt, bias: bias, g: g, d: d, probs: probs + j, stride: n)
                    } else {
                        qs.unpack(keyCodes + i * rb, into: x)
                        Attention.scoreOne(x, q: qt, g: g, d: d, scale: 1, probs: probs + j, stride: n)
                        for h in 0..<g { probs[h * n + j] += bias[h] }
                    }
                    keyBytes += rb
                } else {
                    Attention.scoreOne(fpKeys + (i - qn) * d, q: q, g: g, d: d, scale: scale, probs: probs + j, stride: n)
                    keyBytes += fpRow
                }
            }
        }
        for h in 0..<g { inv[h] = 1 / Attention.expShiftedToMax(probs + h * n, count: n) }
        // Values, in blocks: normalise the block's probabilities, then its quantized rows (they come
        // first: indices increase and the quantized tokens are the oldest), then its Float32 rows.
        if idx != nil { for t in 0..<min(ahead, n) { prefetchValue(row(t), qn: qn, codes: valueCodes, rowBytes: rb, fp: fpValues, d: d) } }
        var j0 = 0
        while j0 < n {
            let cnt = min(block, n - j0)
            if idx != nil {
                for t in min(j0 + ahead, n)..<min(j0 + ahead + cnt, n) {
                    prefetchValue(row(t), qn: qn, codes: valueCodes, rowBytes: rb, fp: fpValues, d: d)
                }
            }
            for h in 0..<g {
                let p = probs + h * n + j0, s = inv[h]
                var r = 0
                while r + 8 <= cnt { UnsafeMutableRawPointer(p + r).storeBytes(of: load(p, r) * s, as: V8.self); r += 8 }
                while r < cnt { p[r] *= s; r += 1 }
            }
            var nq = 0
            while nq < cnt && row(j0 + nq) < qn { nq += 1 }
            if nq > 0 {
                if fastValues {
                    for r in 0..<nq {
                        let i = row(j0 + r), par = qs.valueParams + i * pv
                        codeRows[r] = UnsafePointer(valueCodes + i * rb)
                        for h in 0..<g {
                            let ph = probs[h * n + j0 + r], w = weights + (r * g + h) * vg, ms = minSums + h * vg
                            var k = 0
                            if vg >= 4 {
                                let pp = SIMD4<Float>(repeating: ph)
                                while k + 4 <= vg {
                                    let sc = UnsafeRawPointer(par + vg + k).loadUnaligned(as: SIMD4<Float>.self)
                                    let mn = UnsafeRawPointer(par + k).loadUnaligned(as: SIMD4<Float>.self)
                                    var acc = UnsafeRawPointer(ms + k).loadUnaligned(as: SIMD4<Float>.self)
                                    acc.addProduct(pp, mn)
                                    UnsafeMutableRawPointer(w + k).storeBytes(of: pp * sc, as: SIMD4<Float>.self)
                                    UnsafeMutableRawPointer(ms + k).storeBytes(of: acc, as: SIMD4<Float>.self)
                                    k += 4
                                }
                            }
                            while k < vg { w[k] = ph * par[vg + k]; ms[k] = ms[k].addingProduct(ph, par[k]); k += 1 }
                        }
                    }
                    accumulateCodes(C.self, codeRows, count: nq, weights: weights, g: g, d: d, groupSize: G, valueGroups: vg, out: accQ)
                } else {
                    for r in 0..<nq {
                        let i = row(j0 + r)
                        qs.unpack(valueCodes + i * rb, into: x)
                        qs.dequantizeValueRow(codes: x, params: qs.valueParams + i * pv, into: v)
                        Attention.accumulateOne(v, probs: probs + j0 + r, stride: n, g: g, d: d, out: out)
                    }
                }
                valueBytes += nq * valueRowBytes
            }
            for r in nq..<cnt {
                Attention.accumulateOne(fpValues + (row(j0 + r) - qn) * d, probs: probs + j0 + r, stride: n, g: g, d: d, out: out)
                valueBytes += fpRow
            }
            j0 += cnt
        }
        if fastValues {   // add the quantized rows' sums (lane factors applied) and p * min over each group's channels
            let f = C.laneFactors
            for h in 0..<g {
                let o = out + h * d, a = accQ + h * d, ms = minSums + h * vg
                var c = 0
                while c < d {
                    let x = load(o, c) + load(a, c) * f + V8(repeating: ms[c / G])
                    UnsafeMutableRawPointer(o + c).storeBytes(of: x, as: V8.self)
                    c += 8
                }
            }
        }
        return RowsRead(rows: n, keyBytes: keyBytes, valueBytes: valueBytes)
    }

    @inline(__always)
    static func prefetchKey<E: KVElement>(_ i: Int, qn: Int, codes: UnsafeMutablePointer<UInt8>, rowBytes: Int, fp: UnsafeMutablePointer<E>, d: Int) {
        if i < qn { let p = codes + i * rowBytes; kv_prefetch(p); kv_prefetch(p + rowBytes - 1) } else { Attention.prefetchRow(fp + (i - qn) * d, d) }
    }

    @inline(__always)
    static func prefetchValue<E: KVElement>(_ i: Int, qn: Int, codes: UnsafeMutablePointer<UInt8>, rowBytes: Int, fp: UnsafeMutablePointer<E>, d: Int) {
        if i < qn { let p = codes + i * rowBytes; kv_prefetch(p); kv_prefetch(p + rowBytes - 1) } else { Attention.prefetchRow(fp + (i - qn) * d, d) }
    }

    typealias V8 = SIMD8<Float>

    @inline(__always)
    static func load(_ p: UnsafePointer<Float>, _ i: Int) -> V8 { UnsafeRawPointer(p + i).loadUnaligned(as: V8.self) }

    @inline(__always)
    static func hsum(_ v: V8) -> Float { Attention.hsum(v) }

    /// One quantized key row's scores for every head: bias[h] + q~[h] . x, heads four at a time (the
    /// codes of 16 channels unpacked once for the four), two accumulators per head (even and odd
    /// 8-channel chunks). d % 16 == 0.
    @inline(__always)
    static func scoreCodes<C: CodeLayout>(_ layout: C.Type, _ codes: UnsafePointer<UInt8>, q: UnsafePointer<Float>,
                                          bias: UnsafePointer<Float>, g: Int, d: Int, probs: UnsafeMutablePointer<Float>, stride: Int) {
        var h = 0
        while h < g {
            // Heads past g alias head h (computed, not written).
            let q0 = q + h * d, q1 = q0 + (h + 1 < g ? d : 0), q2 = q0 + (h + 2 < g ? 2 * d : 0), q3 = q0 + (h + 3 < g ? 3 * d : 0)
            var a0 = V8(), a1 = V8(), a2 = V8(), a3 = V8(), b0 = V8(), b1 = V8(), b2 = V8(), b3 = V8()
            var c = 0
            while c < d {
                let (xa, xb) = C.unpack16(codes, channel: c)
                a0.addProduct(load(q0, c), xa); b0.addProduct(load(q0, c + 8), xb)
                a1.addProduct(load(q1, c), xa); b1.addProduct(load(q1, c + 8), xb)
                a2.addProduct(load(q2, c), xa); b2.addProduct(load(q2, c + 8), xb)
                a3.addProduct(load(q3, c), xa); b3.addProduct(load(q3, c + 8), xb)
                c += 16
            }
            probs[h * stride] = hsum(a0 + b0) + bias[h]
            if h + 1 < g { probs[(h + 1) * stride] = hsum(a1 + b1) + bias[h + 1] }
            if h + 2 < g { probs[(h + 2) * stride] = hsum(a2 + b2) + bias[h + 2] }
            if h + 3 < g { probs[(h + 3) * stride] = hsum(a3 + b3) + bias[h + 3] }
            h += 4
        }
    }

    /// out[h][c] += sum over the block's rows r (in order) of w[r, h, group(c)] * x_r[c], for `count`
    /// rows of packed value codes; the output chunks stay in registers over the block (heads four at
    /// a time, 16 channels per step). d % 16 == 0, G % 8 == 0.
    @inline(__always)
    static func accumulateCodes<C: CodeLayout>(_ layout: C.Type, _ rows: UnsafePointer<UnsafePointer<UInt8>>, count cnt: Int,
                                               weights w: UnsafePointer<Float>, g: Int, d: Int, groupSize G: Int, valueGroups vg: Int,
                                               out: UnsafeMutablePointer<Float>) {
        @inline(__always) func store(_ x: V8, _ o: UnsafeMutablePointer<Float>, _ c: Int) { UnsafeMutableRawPointer(o + c).storeBytes(of: x, as: V8.self) }
        let rs = g * vg   // weights per row
        var h = 0
        while h + 4 <= g {
            let o0 = out + h * d, o1 = o0 + d, o2 = o1 + d, o3 = o2 + d
            var c = 0
            while c < d {
                let ka = c / G, kb = (c + 8) / G
                var x0 = load(o0, c), x1 = load(o1, c), x2 = load(o2, c), x3 = load(o3, c)
                var y0 = load(o0, c + 8), y1 = load(o1, c + 8), y2 = load(o2, c + 8), y3 = load(o3, c + 8)
                var wr = w + h * vg
                if ka == kb {   // both chunks in one channel group (always when G % 16 == 0): one weight per head
                    for r in 0..<cnt {
                        let (xa, xb) = C.unpack16(rows[r], channel: c)
                        let w0 = V8(repeating: wr[ka]), w1 = V8(repeating: wr[vg + ka])
                        let w2 = V8(repeating: wr[2 * vg + ka]), w3 = V8(repeating: wr[3 * vg + ka])
                        x0.addProduct(w0, xa); y0.addProduct(w0, xb)
                        x1.addProduct(w1, xa); y1.addProduct(w1, xb)
                        x2.addProduct(w2, xa); y2.addProduct(w2, xb)
                        x3.addProduct(w3, xa); y3.addProduct(w3, xb)
                        wr += rs
                    }
                } else {
                    for r in 0..<cnt {
                        let (xa, xb) = C.unpack16(rows[r], channel: c)
                        x0.addProduct(V8(repeating: wr[ka]), xa); y0.addProduct(V8(repeating: wr[kb]), xb)
                        x1.addProduct(V8(repeating: wr[vg + ka]), xa); y1.addProduct(V8(repeating: wr[vg + kb]), xb)
                        x2.addProduct(V8(repeating: wr[2 * vg + ka]), xa); y2.addProduct(V8(repeating: wr[2 * vg + kb]), xb)
                        x3.addProduct(V8(repeating: wr[3 * vg + ka]), xa); y3.addProduct(V8(repeating: wr[3 * vg + kb]), xb)
                        wr += rs
                    }
                }
                store(x0, o0, c); store(x1, o1, c); store(x2, o2, c); store(x3, o3, c)
                store(y0, o0, c + 8); store(y1, o1, c + 8); store(y2, o2, c + 8); store(y3, o3, c + 8)
                c += 16
            }
            h += 4
        }
        while h < g {
            let o = out + h * d
            var c = 0
            while c < d {
                let ka = c / G, kb = (c + 8) / G
                var x0 = load(o, c), y0 = load(o, c + 8)
                var wr = w + h * vg
                for r in 0..<cnt {
                    let (xa, xb) = C.unpack16(rows[r], channel: c)
                    x0.addProduct(V8(repeating: wr[ka]), xa); y0.addProduct(V8(repeating: wr[kb]), xb)
                    wr += rs
                }
                store(x0, o, c); store(y0, o, c + 8)
                c += 16
            }
            h += 1
        }
    }
}
