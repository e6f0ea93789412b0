import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// KIVI: packed codes, bytes measured from the store, the dequantizing decode kernel, and
/// composition with eviction and selection.
final class KIVITests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,std=0.15").load()
    static let prompt = (0..<150).map { ($0 * 37 + 11) % 256 }
    static let decodeTokens = [5, 77, 130, 9, 200, 31, 64, 18, 99, 3, 250, 17]

    func run(_ policy: CachePolicy, prompt: [Int] = prompt, check: ((KVCache) -> Void)? = nil) -> (logits: [Float], cache: KVCache) {
        let m = Self.model
        let cache = m.makeCache(policy: policy)
        var logits = m.forward(prompt, startPosition: 0, cache: cache, phase: .prefill)
        check?(cache)
        for (i, t) in Self.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: prompt.count + i, cache: cache, phase: .decode)
            check?(cache)
        }
        return (logits, cache)
    }

    /// Independent count of what a store holds: Float32 rows, packed codes (ceil(d b / 8) bytes per
    /// token for keys and for values), value mins/scales per token and channel group, key mins/scales
    /// per channel and key group.
    static func expectedBytes(_ s: HeadStore) -> Int {
        let d = s.headDim
        guard let q = s.quantized else { return s.count * d * 8 }
        let b = q.spec.bits, g = q.spec.groupSize
        let codeBytes = (d * b + 7) / 8, vg = (d + g - 1) / g
        return (s.count - q.count) * d * 8 + q.count * (2 * codeBytes + 2 * vg * 4) + q.groups * 2 * d * 4
    }

    static func checkStores(_ cache: KVCache, file: StaticString = #filePath, line: UInt = #line) {
        var total = 0
        for layer in cache.stores { for s in layer {
            total += expectedBytes(s)
            if let q = s.quantized {
                XCTAssertEqual(q.groupCounts.reduce(0) { $0 + Int($1) }, q.count, "group counts must sum to the quantized tokens", file: file, line: line)
                XCTAssertFalse(q.groupCounts.contains(0), "an empty key group is still held", file: file, line: line)
                XCTAssertGreaterThanOrEqual(s.count - q.count, min(s.count, q.spec.residual), "the newest R tokens must stay Float32", file: file, line: line)
                let pos = (0..<s.count).map { s.position($0) }
                XCTAssertEqual(pos, pos.sorted(), "quantized stores keep position order", file: file, line: line)
            }
        } }
        XCTAssertEqual(cache.stats.bytesStored, total, "reported bytes differ from an independent count of the store", file: file, line: line)
    }

    // MARK: exactness

    func testSixteenBitsReproducesFullCacheLogits() throws {
        let full = run(FullCachePolicy()).logits
        XCTAssertEqual(run(try KIVI(bits: 16, groupSize: 8, residual: 16)).logits, full)
        XCTAssertEqual(run(try KIVI(bits: 32)).logits, full)
        XCTAssertEqual(run(try! PolicyStack([try SnapKV(budget: .tokens(400), window: 8), try KIVI(bits: 16)])).logits, full)
    }

    func testEightBitsIsCloseAndTwoBitsChangesSomething() throws {
        let full = run(FullCachePolicy()).logits
        let scale = full.map { abs($0) }.max()!
        let q8 = run(try KIVI(bits: 8, groupSize: 8, residual: 16), check: { Self.checkStores($0) })
        XCTAssertGreaterThan(q8.cache.stores[0][0].quantizedCount, 0)
        let err8 = zip(q8.logits, full).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(err8 / scale, 2e-2, "8-bit KIVI moved the logits by \(err8)")
        let q2 = run(try KIVI(bits: 2, groupSize: 8, residual: 16)).logits
        XCTAssertNotEqual(q2, full)
        XCTAssertTrue(q2.allSatisfy { $0.isFinite })
    }

    // MARK: quantization error

    /// Every element dequantizes to within half a step (scale / 2) of itself, plus float rounding.
    func testQuantizeDequantizeErrorWithinHalfScale() {
        var rng = SeededRandom(seed: 11)
        for bits in [2, 4, 8] { for (d, g) in [(64, 32), (16, 8), (20, 8), (128, 32)] {
            let spec = QuantizationSpec(bits: bits, groupSize: g, residual: 0)
            let q = QuantizedStore(spec: spec, headDim: d)
            var keys: [[Float]] = [], values: [[Float]] = []
            for _ in 0..<3 {
                let k = (0..<(g * d)).map { _ in rng.nextNormal() * 3 + 0.5 }
                var v = (0..<(g * d)).map { _ in rng.nextNormal() }
                v[0] = 7; v[d - 1] = -9   // outliers
                keys.append(k); values.append(v)
                q.appendGroup(keys: k, values: v, rows: g)
            }
            var out = [Float](repeating: 0, count: d)
            for grp in 0..<3 {
                let k = keys[grp], v = values[grp]
                for c in 0..<d {
                    let col = (0..<g).map { k[$0 * d + c] }
                    let step = (col.max()! - col.min()!) / Float(spec.maxCode)
                    for r in 0..<g {
                        q.dequantizeKey(grp * g + r, into: &out)
                        let x = k[r * d + c], eps = 4 * max(abs(x), abs(col.min()!), 1).ulp
                        XCTAssertLessThanOrEqual(abs(out[c] - x), step / 2 + eps, "key b=\(bits) d=\(d) group \(grp) token \(r) channel \(c)")
                    }
                }
                for r in 0..<g {
                    q.dequantizeValue(grp * g + r, into: &out)
                    for lo in stride(from: 0, to: d, by: g) {
                        let seg = (lo..<min(lo + g, d)).map { v[r * d + $0] }
                        let step = (seg.max()! - seg.min()!) / Float(spec.maxCode)
                        for c in lo..<min(lo + g, d) {
                            let x = v[r * d + c], eps = 4 * max(abs(x), abs(seg.min()!), 1).ulp
                            XCTAssertLessThanOrEqual(abs(out[c] - x), step / 2 + eps, "value b=\(bits) d=\(d) token \(r) channel \(c)")
                        }
                    }
                }
            }
            // Eviction keeps the remaining tokens' codes and their groups' mins/scales; an emptied group goes.
            var before: [[Float]] = []
            let keep = (0..<(3 * g)).filter { ($0 < g || $0 >= 2 * g) && $0 % 3 != 1 }
            for i in keep { q.dequantizeKey(i, into: &out); before.append(out); q.dequantizeValue(i, into: &out); before.append(out) }
            q.retain(keep)
            XCTAssertEqual(q.groups, 2, "the emptied middle group must be freed")
            XCTAssertEqual(q.count, keep.count)
            for i in 0..<keep.count {
                q.dequantizeKey(i, into: &out); XCTAssertEqual(out, before[2 * i])
                q.dequantizeValue(i, into: &out); XCTAssertEqual(out, before[2 * i + 1])
            }
        } }
    }

    // MARK: bytes

    /// Exact bytes for d = 128, b = 2, G = 32, R = 128 after 1000 tokens: 864 quantized (27 key
    /// groups), 136 Float32. Per quantized token: 32 + 32 code bytes, 2 x 4 value mins/scales x 4
    /// bytes, and 2 x 128 x 4 / 32 bytes of key mins/scales = 128 bytes, vs 1024 (Float32) and
    /// 512 (fp16): 1/8 of the Float32 cache, 1/4 of fp16 (2/16 of fp16 for the codes + overhead).
    func testBytesStoredExactForTwoBits() {
        let d = 128, t = 1000
        let s = HeadStore(headDim: d, rows: QuantizedRows(spec: QuantizationSpec(bits: 2, groupSize: 32, residual: 128), headDim: d))
        var rng = SeededRandom(seed: 3)
        for p in 0..<t {
            let k = (0..<d).map { _ in rng.nextNormal() }, v = (0..<d).map { _ in rng.nextNormal() }
            s.append(key: k, value: v, position: p)
            if p % 7 == 0 || p == t - 1 { s.quantizeResidual() }
        }
        XCTAssertEqual(s.quantizedCount, 864)
        XCTAssertEqual(s.quantized!.groups, 27)
        let fp = 136 * d * 4 * 2, codes = 864 * (32 + 32), valueParams = 864 * 2 * 4 * 4, keyParams = 27 * 2 * d * 4
        XCTAssertEqual(s.payloadBytes, fp + codes + valueParams + keyParams)
        XCTAssertEqual(s.payloadBytes, 249_856)
        let perQuantized = Double(s.payloadBytes - fp) / 864
        XCTAssertEqual(perQuantized, 128)
        XCTAssertLessThanOrEqual(perQuantized, Double(d * 2 * 2) * 2 / 16 + Double(2 * 4 * 4 + 2 * d * 4 / 32), "2/16 of fp16 plus scale/zero overhead")
        XCTAssertEqual(perQuantized / Double(d * 2 * 4), 1.0 / 8)     // vs Float32
        XCTAssertEqual(perQuantized / Double(d * 2 * 2), 1.0 / 4)     // vs fp16
        XCTAssertEqual(s.metadataBytes, t * 4 + 27 * 4)
        // 4 bits: 64 + 64 code bytes instead.
        let s4 = HeadStore(headDim: d, rows: QuantizedRows(spec: QuantizationSpec(bits: 4, groupSize: 32, residual: 128), headDim: d))
        for p in 0..<t { let k = [Float](repeating: Float(p), count: d); s4.append(key: k, value: k, position: p) }
        s4.quantizeResidual()
        XCTAssertEqual(s4.payloadBytes, fp + 864 * 128 + valueParams + keyParams)
    }

    func testModelRunBytesMatchStore() throws {
        let r = run(try KIVI(bits: 2, groupSize: 8, residual: 16), check: { Self.checkStores($0) })
        let full = run(FullCachePolicy()).cache
        XCTAssertLessThan(r.cache.stats.bytesStored, full.stats.bytesStored / 2)
        XCTAssertGreaterThan(r.cache.stats.decodeBytesRead, 0)
        XCTAssertLessThan(r.cache.stats.decodeBytesRead, full.stats.decodeBytesRead / 2)
    }

    // MARK: composition

    func testStacksWithEvictionAndSelection() throws {
        let full = run(FullCachePolicy()).logits
        let stacks: [CachePolicy] = [
            try! PolicyStack([try SnapKV(budget: .tokens(64), window: 8), try KIVI(bits: 2, groupSize: 8, residual: 16)]),
            try! PolicyStack([try KIVI(bits: 4, groupSize: 8, residual: 16), try SnapKV(budget: .tokens(64), window: 8)]),
            try! PolicyStack([try Quest(tokenBudget: 48, pageSize: 8, denseLayers: 0), try KIVI(bits: 2, groupSize: 8, residual: 16)]),
            try! PolicyStack([try H2O(budget: .tokens(80)), try KIVI(bits: 2, groupSize: 8, residual: 16)]),
            try! PolicyStack([try StreamingLLM(budget: .tokens(70), sinks: 4), try KIVI(bits: 4, groupSize: 8, residual: 16)]),
            try! PolicyStack([try OracleTopK(topK: .tokens(40)), try KIVI(bits: 4, groupSize: 8, residual: 16)]),
            try! PolicyStack([try TOVA(budget: .tokens(80)), try KIVI(bits: 2, groupSize: 8, residual: 16)]),
        ]
        for p in stacks {
            var steps = 0
            let r = run(p, check: { c in Self.checkStores(c); steps += 1 })
            XCTAssertTrue(r.logits.allSatisfy { $0.isFinite }, p.name)
            XCTAssertNotEqual(r.logits, full, p.name)
            for layer in r.cache.stores { for s in layer {
                XCTAssertGreaterThan(s.quantizedCount, 0, "\(p.name): nothing quantized")
            } }
        }
        // H2O evicts during decoding: the store stays at its budget with groups freed as they empty.
        let h2o = run(try! PolicyStack([try H2O(budget: .tokens(80)), try KIVI(bits: 2, groupSize: 8, residual: 16)])).cache
        for layer in h2o.stores { for s in layer { XCTAssertLessThanOrEqual(s.count, 80) } }
        // Selection reads fewer bytes than the same KIVI cache without it.
        let k = run(try KIVI(bits: 2, groupSize: 8, residual: 16)).cache
        let kq = run(try! PolicyStack([try Quest(tokenBudget: 48, pageSize: 8, denseLayers: 0), try KIVI(bits: 2, groupSize: 8, residual: 16)])).cache
        XCTAssertLessThan(kq.stats.decodeBytesRead, k.stats.decodeBytesRead)
        XCTAssertEqual(kq.stats.bytesStored, k.stats.bytesStored)
    }

    // MARK: the dequantizing kernel

    /// Reference: keys and values dequantized in the test from the packed codes and the stored
    /// mins/scales (own unpacking), then the Float32 kernel.
    static func referenceStore(_ s: HeadStore) -> HeadStore {
        let q = s.quantized!, d = s.headDim, b = q.spec.bits, per = 8 / b, mask = (1 << b) - 1, g = q.spec.groupSize
        let vg = (d + g - 1) / g
        let ref = HeadStore(headDim: d)
        var grp = 0
        for i in 0..<s.count {
            var k = [Float](repeating: 0, count: d), v = k
            if i < q.count {
                while q.groupStarts[grp + 1] <= i { grp += 1 }
                for c in 0..<d {
                    let kc = Float((Int(q.keyCodes[i * q.rowBytes + c / per]) >> ((c % per) * b)) & mask)
                    let vc = Float((Int(q.valueCodes[i * q.rowBytes + c / per]) >> ((c % per) * b)) & mask)
                    k[c] = q.keyParams[grp * 2 * d + c] + q.keyParams[grp * 2 * d + d + c] * kc
                    v[c] = q.valueParams[i * 2 * vg + c / g] + q.valueParams[i * 2 * vg + vg + c / g] * vc
                }
            } else {
                s.key(i, into: &k); s.value(i, into: &v)
            }
            ref.append(key: k, value: v, position: s.position(i))
        }
        return ref
    }

    func testDequantizingKernelMatchesExplicitDequantization() {
        var rng = SeededRandom(seed: 5)
        for (bits, d, g, heads) in [(2, 64, 32, 4), (4, 128, 32, 2), (8, 16, 8, 3), (2, 20, 8, 5)] {
            let s = HeadStore(headDim: d, rows: QuantizedRows(spec: QuantizationSpec(bits: bits, groupSize: g, residual: 2 * g), headDim: d))
            for p in 0..<(11 * g + 5) {
                let k = (0..<d).map { _ in rng.nextNormal() }, v = (0..<d).map { _ in rng.nextNormal() }
                s.append(key: k, value: v, position: p)
            }
            s.quantizeResidual()
            XCTAssertEqual(s.quantizedCount, 9 * g)
            s.retain((0..<s.count).filter { $0 % 5 != 1 && !($0 >= g && $0 < 2 * g) })   // evict, emptying group 1
            let qv = (0..<(heads * d)).map { _ in rng.nextNormal() }
            let scale = 1 / Float(d).squareRoot()
            let ref = Self.referenceStore(s)
            for indices in [nil, Array(stride(from: 0, to: s.count, by: 3)).map(Int32.init)] {
                let n = indices?.count ?? s.count
                var p1 = [Float](repeating: 0, count: heads * n), p2 = p1
                var o1 = [Float](repeating: 0, count: heads * d), o2 = o1
                let run = { (st: HeadStore, probs: inout [Float], out: inout [Float]) -> RowsRead in
                    if let idx = indices {
                        return idx.withUnsafeBufferPointer { st.rows.decode(q: qv, groups: heads, indices: $0, scale: scale, probs: &probs, out: &out) }
                    }
                    return st.rows.decode(q: qv, groups: heads, indices: nil, scale: scale, probs: &probs, out: &out)
                }
                let read = run(s, &p1, &o1); _ = run(ref, &p2, &o2)
                let pe = zip(p1, p2).map { abs($0 - $1) }.max()!, oe = zip(o1, o2).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(pe, 1e-4, "b=\(bits) d=\(d): probabilities differ by \(pe)")
                XCTAssertLessThanOrEqual(oe, 1e-4, "b=\(bits) d=\(d): outputs differ by \(oe)")
                // Bytes read: codes and parameters, not Float32 rows.
                let q = s.quantized!
                let rows = indices.map { $0.map(Int.init) } ?? Array(0..<s.count)
                let qRows = rows.filter { $0 < q.count }
                let groupsTouched = Set(qRows.map { q.group(of: $0) }).count
                XCTAssertEqual(read.keyBytes, qRows.count * q.rowBytes + groupsTouched * 2 * d * 4 + (rows.count - qRows.count) * d * 4)
                XCTAssertEqual(read.valueBytes, qRows.count * (q.rowBytes + 2 * q.valueGroups * 4) + (rows.count - qRows.count) * d * 4)
            }
        }
    }

    /// Decoding a model with KIVI gives the logits of the same model decoding over the explicitly
    /// dequantized cache (a full cache whose stores are replaced, each step, by the reference).
    func testModelDecodeMatchesDequantizedReference() throws {
        let m = Self.model
        let cache = m.makeCache(policy: try KIVI(bits: 2, groupSize: 8, residual: 16))
        _ = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        for (i, t) in Self.decodeTokens.enumerated() {
            // Reference: a Float32 cache holding exactly the dequantized contents, then the same step.
            let ref = m.makeCache()
            let shape = cache.shape
            for l in 0..<shape.layers {
                let stores = cache.stores[l].map(Self.referenceStore)
                var k = [Float](repeating: 0, count: stores[0].count * shape.kvHeads * shape.headDim), v = k
                for (h, s) in stores.enumerated() { for j in 0..<s.count { for c in 0..<shape.headDim {
                    k[(j * shape.kvHeads + h) * shape.headDim + c] = s.keys[j * shape.headDim + c]
                    v[(j * shape.kvHeads + h) * shape.headDim + c] = s.values[j * shape.headDim + c]
                } } }
                let rows = stores[0].count
                var out = [Float](repeating: 0, count: rows * shape.queryHeads * shape.headDim)
                let qz = [Float](repeating: 0, count: rows * shape.queryHeads * shape.headDim)
                ref.attention(layer: l, phase: .prefill, rows: rows, queries: qz, keys: k, values: v,
                              positions: (0..<rows).map { stores[0].position($0) }, output: &out)
            }
            ref.endStep(phase: .prefill)
            let a = m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
            let b = m.forward([t], startPosition: Self.prompt.count + i, cache: ref, phase: .decode)
            let err = zip(a, b).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(err, 1e-4, "step \(i): KIVI decode differs from the dequantized reference by \(err)")
        }
    }

    // MARK: spec and parser

    func testSpecAndValidation() throws {
        let spec = PolicySpec(KIVI.Config(bits: 2, groupSize: 32, residual: 128))
        XCTAssertEqual(spec.kind, "kivi")
        XCTAssertEqual(spec.family, "quantization")
        XCTAssertEqual(spec.parameters.map(\.0), ["bits", "group_size", "residual"])
        XCTAssertTrue(try spec.make() is KIVI)
        XCTAssertTrue(PolicySpec.names.contains("kivi"))
        for (b, g, r, field) in [(3, 32, 128, "bits"), (1, 32, 128, "bits"), (2, 0, 128, "group_size"), (2, 32, 100, "residual")] {
            XCTAssertThrowsError(try KIVI(bits: b, groupSize: g, residual: r)) { e in
                guard case PolicyError.invalidParameter("kivi", let f, _) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(f, field)
            }
        }
        XCTAssertNil(try KIVI(bits: 16).layout.quantization)
        XCTAssertEqual(try PolicyStack([FullCachePolicy(), try KIVI(bits: 4)]).layout.quantization?.bits, 4)
    }
}
