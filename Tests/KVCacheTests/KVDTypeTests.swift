import Foundation
import XCTest
@testable import KVCacheCore
import KVModel
import KVPolicies
import KVTestSupport

/// KV cache precision (`kv_dtype`): 16-bit rows hold exactly the round-to-nearest-even values of
/// what was appended (oracles: Swift's Float16, and a bit-level bf16 rounding written here), the
/// kernels that read them compute what they compute over Float32 rows holding those rounded values
/// (and a brute-force softmax attention in Double), and the bytes held and read are half of Float32's.
final class KVDTypeTests: XCTestCase {
    /// Values that exercise rounding: ties, subnormals, beyond binary16's range, signed zeros, and
    /// seeded random magnitudes over many exponents.
    static func samples(_ n: Int, seed: UInt64) -> [Float] {
        var out: [Float] = [0, -0, 1, -1, 65504, 65519, 65520, 70000, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, 3.14159,
                            Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_1000),
                            Float(bitPattern: 0x3F80_3000), Float(bitPattern: 0x3F80_0FFF), Float(bitPattern: 0x7F7F_FFFF)]
        var rng = SplitMix(seed)
        while out.count < n {
            let m = Float(rng.unit() * 2 - 1), e = Float(Int(rng.unit() * 40) - 24)
            out.append(m * pow(2, e))
        }
        return Array(out.prefix(n))
    }

    /// bf16 round to nearest, ties to even, from the bits: keep the upper half, add one unit when the
    /// dropped half is over 0x8000, or exactly 0x8000 with an odd kept half.
    static func bf16(_ x: Float) -> UInt16 {
        let b = x.bitPattern, upper = UInt16(b >> 16), rest = b & 0xFFFF
        return rest > 0x8000 || (rest == 0x8000 && upper & 1 == 1) ? upper &+ 1 : upper
    }

    func testStoredRowsAreTheRoundedValues() {
        let d = 16, xs = Self.samples(40 * d, seed: 7)
        let h = Float16Rows(headDim: d, initialCapacity: 1), b = BFloat16Rows(headDim: d, initialCapacity: 1)
        xs.withUnsafeBufferPointer { p in
            for t in 0..<40 {
                h.append(key: p.baseAddress! + t * d, value: p.baseAddress! + (39 - t) * d)
                b.append(key: p.baseAddress! + t * d, value: p.baseAddress! + (39 - t) * d)
            }
        }
        var back = [Float](repeating: 0, count: d)
        for t in 0..<40 {
            for c in 0..<d {
                let k = xs[t * d + c], v = xs[(39 - t) * d + c]
                XCTAssertEqual(h.keys[t * d + c].bits, Float16(k).bitPattern, "f16 key \(k)")
                XCTAssertEqual(h.values[t * d + c].bits, Float16(v).bitPattern, "f16 value \(v)")
                XCTAssertEqual(b.keys[t * d + c].bits, Self.bf16(k), "bf16 key \(k)")
                XCTAssertEqual(b.values[t * d + c].bits, Self.bf16(v), "bf16 value \(v)")
            }
            h.key(t, into: &back)
            XCTAssertEqual(back, (0..<d).map { Float(Float16(xs[t * d + $0])) })
            b.value(t, into: &back)
            XCTAssertEqual(back, (0..<d).map { Float(bitPattern: UInt32(Self.bf16(xs[(39 - t) * d + $0])) << 16) })
        }
        XCTAssertEqual(h.payloadBytes, 40 * d * 2 * 2)
        XCTAssertEqual(b.payloadBytes, 40 * d * 2 * 2)
        // A tie rounds to even, and binary16 overflows to infinity past 65519.99.
        XCTAssertEqual(Half(rounding: 65520).bits, 0x7C00)
        XCTAssertEqual(BFloat16(rounding: Float(bitPattern: 0x3F80_8000)).bits, 0x3F80)
        XCTAssertEqual(BFloat16(rounding: Float(bitPattern: 0x3F81_8000)).bits, 0x3F82)
    }

    /// Float32 rows holding `keys`/`values` rounded through `dtype` first, and rows of `dtype`
    /// holding the unrounded ones.
    static func pair(_ dtype: KVDType, keys: [Float], values: [Float], d: Int) -> (KVRows, KVRows) {
        let round: (Float) -> Float = dtype == .f16 ? { Float(Float16($0)) } : { Float(bitPattern: UInt32(bf16($0)) << 16) }
        let f32 = Float32Rows(headDim: d), low = dtype.makeRows(headDim: d)
        let rk = keys.map(round), rv = values.map(round)
        for t in 0..<keys.count / d {
            rk.withUnsafeBufferPointer { k in rv.withUnsafeBufferPointer { v in f32.append(key: k.baseAddress! + t * d, value: v.baseAddress! + t * d) } }
            keys.withUnsafeBufferPointer { k in values.withUnsafeBufferPointer { v in low.append(key: k.baseAddress! + t * d, value: v.baseAddress! + t * d) } }
        }
        return (f32, low)
    }

    func testDecodeOverHalfRowsEqualsAttentionOverRoundedRows() {
        let d = 64, g = 3, n = 301, scale = 1 / Float(d).squareRoot()
        var rng = SplitMix(11)
        let keys = (0..<n * d).map { _ in Float(rng.unit() * 4 - 2) }, values = (0..<n * d).map { _ in Float(rng.unit() * 2 - 1) }
        let q = (0..<g * d).map { _ in Float(rng.unit() * 2 - 1) }
        let gathered: [Int32] = (0..<n).filter { $0 % 3 != 1 }.map(Int32.init)
        for dtype in [KVDType.f16, .bf16] {
            let (f32, low) = Self.pair(dtype, keys: keys, values: values, d: d)
            for idx in [nil, gathered] {
                let m = idx?.count ?? n
                var p1 = [Float](repeating: 0, count: g * m), p2 = p1, o1 = [Float](repeating: 0, count: g * d), o2 = o1
                let run = { (rows: KVRows, probs: inout [Float], out: inout [Float]) -> RowsRead in
                    if let idx { return idx.withUnsafeBufferPointer { rows.decode(q: q, groups: g, indices: $0, scale: scale, probs: &probs, out: &out) } }
                    return rows.decode(q: q, groups: g, indices: nil, scale: scale, probs: &probs, out: &out)
                }
                let r1 = run(f32, &p1, &o1), r2 = run(low, &p2, &o2)
                // The same arithmetic over the same values: equal bit for bit.
                XCTAssertEqual(o2, o1, "\(dtype) \(idx == nil ? "dense" : "gathered")")
                XCTAssertEqual(p2, p1)
                XCTAssertEqual(r2.keyBytes * 2, r1.keyBytes); XCTAssertEqual(r2.valueBytes * 2, r1.valueBytes)
                XCTAssertEqual(r2.keyBytes, m * d * 2)
                // Brute force in Double over the rounded rows.
                var k = [Float](repeating: 0, count: d), v = k
                for h in 0..<g {
                    let rows = idx.map { $0.map(Int.init) } ?? Array(0..<n)
                    let s: [Double] = rows.map { i in
                        f32.key(i, into: &k)
                        return Double(scale) * (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(k[$1]) }
                    }
                    let mx = s.max()!, e = s.map { exp($0 - mx) }, z = e.reduce(0, +)
                    var ref = [Double](repeating: 0, count: d)
                    for (j, i) in rows.enumerated() { f32.value(i, into: &v); for c in 0..<d { ref[c] += e[j] / z * Double(v[c]) } }
                    for c in 0..<d { XCTAssertEqual(Double(o2[h * d + c]), ref[c], accuracy: 1e-5) }
                }
            }
        }
    }

    func testPrefillKIVIAndMergedRowsOverHalfRowsEqualTheRoundedFloat32() {
        let d = 32, n = 700, rowsQ = 5
        var rng = SplitMix(5)
        let keys = (0..<n * d).map { _ in Float(rng.unit() * 4 - 2) }, values = (0..<n * d).map { _ in Float(rng.unit() * 2 - 1) }
        let q = (0..<rowsQ * d).map { _ in Float(rng.unit() * 2 - 1) }
        for dtype in [KVDType.f16, .bf16] {
            // Prefill: causal attention over more than one key block.
            let (f32, low) = Self.pair(dtype, keys: keys, values: values, d: d)
            let s1 = HeadStore(headDim: d, rows: f32), s2 = HeadStore(headDim: d, rows: low)
            let visible = [100, 300, 520, 640, 700]
            var o1 = [Float](repeating: 0, count: rowsQ * d), o2 = o1
            Attention.causal(q: q, ldq: d, rows: rowsQ, store: s1, visible: visible, scale: 0.2, out: &o1, ldo: d)
            Attention.causal(q: q, ldq: d, rows: rowsQ, store: s2, visible: visible, scale: 0.2, out: &o2, ldo: d)
            XCTAssertEqual(o2, o1, "\(dtype) prefill")
            // KIVI: codes from the rounded values, the residual read as 16-bit rows.
            let spec = QuantizationSpec(bits: 2, groupSize: 32, residual: 64)
            let k1 = QuantizedRows(spec: spec, headDim: d), k2 = QuantizedRows(spec: spec, headDim: d, dtype: dtype)
            var x = [Float](repeating: 0, count: d), y = x
            for t in 0..<n / 2 {
                f32.key(t, into: &x); f32.value(t, into: &y); k1.append(key: x, value: y)
                keys.withUnsafeBufferPointer { kb in values.withUnsafeBufferPointer { vb in k2.append(key: kb.baseAddress! + t * d, value: vb.baseAddress! + t * d) } }
                k1.endStep(); k2.endStep()
            }
            XCTAssertGreaterThan(k2.codes.count, 0)
            XCTAssertEqual(k2.residual.payloadBytes * 2, k1.residual.payloadBytes)
            var p1 = [Float](repeating: 0, count: n), p2 = p1, a = [Float](repeating: 0, count: d), b = a
            let r1 = k1.decode(q: q, groups: 1, indices: nil, scale: 0.2, probs: &p1, out: &a)
            let r2 = k2.decode(q: q, groups: 1, indices: nil, scale: 0.2, probs: &p2, out: &b)
            XCTAssertEqual(b, a, "\(dtype) KIVI")
            XCTAssertEqual(r1.keyBytes - r2.keyBytes, k1.residual.count * d * 2)
        }
    }

    /// The full cache and an eviction policy on the harness's model: every byte figure of an f16 or
    /// bf16 cache is exactly half of the Float32 cache's (the same tokens are kept).
    func testBytesStoredAndReadAreHalfOfFloat32() throws {
        let m = PolicyHarness.model
        let makers: [(String, () throws -> CachePolicy)] = [("full", { FullCachePolicy() }),
                                                            ("streaming_llm", { try StreamingLLM(budget: .tokens(40)) })]
        for (name, make) in makers {
            func stats(_ dtype: KVDType) throws -> (CacheStats, [Int]) {
                let cache = m.makeCache(policy: try make(), kvDType: dtype)
                XCTAssertEqual(cache.kvDType, dtype)
                _ = m.forward(PolicyHarness.prompt, startPosition: 0, cache: cache, phase: .prefill)
                for (i, t) in PolicyHarness.decodeTokens.enumerated() {
                    _ = m.forward([t], startPosition: PolicyHarness.prompt.count + i, cache: cache, phase: .decode)
                }
                XCTAssertEqual(PolicyHarness.storeProblems(cache), [], "\(name) \(dtype)")
                return (cache.stats, PolicyHarness.heldPerHead(cache))
            }
            let (full, held) = try stats(.f32)
            XCTAssertGreaterThan(full.decodeBytesRead, 0)
            for dtype in [KVDType.f16, .bf16] {
                let (half, heldHalf) = try stats(dtype)
                XCTAssertEqual(heldHalf, held, "\(name) \(dtype): the same tokens kept")
                XCTAssertEqual(half.bytesStored * 2, full.bytesStored, "\(name) \(dtype)")
                XCTAssertEqual(half.peakBytesStored * 2, full.peakBytesStored)
                XCTAssertEqual(half.bytesAllocated < full.bytesAllocated, true)
                XCTAssertEqual(half.decodeKeyBytesRead * 2, full.decodeKeyBytesRead)
                XCTAssertEqual(half.decodeValueBytesRead * 2, full.decodeValueBytesRead)
                XCTAssertEqual(half.prefillBytesRead * 2, full.prefillBytesRead)
            }
        }
    }

    func testBadValuesAreRefusedWithTheAcceptedOnes() {
        XCTAssertEqual(try KVDType(parsing: "F16"), .f16)
        XCTAssertThrowsError(try KVDType(parsing: "fp16")) { e in
            XCTAssertEqual(e.localizedDescription, "kv_dtype: expected one of f32, f16, bf16, got 'fp16'")
        }
    }
}

/// SplitMix64: seeded values for the tests.
struct SplitMix {
    var state: UInt64
    init(_ seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
