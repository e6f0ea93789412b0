import Foundation
import XCTest
@testable import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// MiniCache: SLERP against an independent formula, merged stores restore norm x direction,
/// bytes measured from the merged representation, exactness at 100% retention, stacks, kernel.
final class MiniCacheTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,layers=4,std=0.15,seed=5").load()   // 2 KV heads, d 16
    static let prompt = (0..<120).map { ($0 * 37 + 11) % 256 }
    static let decodeTokens = [5, 77, 130, 9, 200, 31, 64, 18]

    func run(_ policy: CachePolicy, decode: Bool = true) -> ([Float], KVCache) {
        let m = Self.model, cache = m.makeCache(policy: policy)
        var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        if decode {
            for (i, t) in Self.decodeTokens.enumerated() {
                logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
            }
        }
        return (logits, cache)
    }

    /// SLERP written the other way: rotate u_x toward u_y along the great circle by t W,
    /// e = cos(tW) u_x + sin(tW) w with w the unit component of u_y orthogonal to u_x.
    func geodesic(_ x: [Double], _ y: [Double], t: Double) -> [Double] {
        let nx = x.reduce(0) { $0 + $1 * $1 }.squareRoot(), ny = y.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let ux = x.map { $0 / nx }, uy = y.map { $0 / ny }
        let c = zip(ux, uy).reduce(0) { $0 + $1.0 * $1.1 }
        let orth = zip(uy, ux).map { $0 - c * $1 }
        let no = orth.reduce(0) { $0 + $1 * $1 }.squareRoot()
        let w = acos(max(-1, min(1, c)))
        return zip(ux, orth).map { cos(t * w) * $0 + sin(t * w) * $1 / no }
    }

    func testSlerpMatchesTheGeodesicAndItsEnds() {
        var rng = SeededRandom(seed: 11)
        for trial in 0..<50 {
            let d = [4, 16, 64, 128][trial % 4]
            let x = (0..<d).map { _ in rng.nextUniform() * 2 - 1 }, y = (0..<d).map { _ in rng.nextUniform() * 2 - 1 }
            for t in [0.0, 0.3, 0.6, 1.0] {
                let got = LayerMerge.slerp(x, y, t: t)
                let want = geodesic(x.map(Double.init), y.map(Double.init), t: t)
                for c in 0..<d { XCTAssertEqual(Double(got.direction[c]), want[c], accuracy: 1e-5, "d \(d) t \(t) channel \(c)") }
                let n = got.direction.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot()
                XCTAssertEqual(n, 1, accuracy: 1e-5, "SLERP of unit vectors is a unit vector")
            }
            // Norms are kept exactly (in Float), the angle is the one between x and y.
            let r = LayerMerge.slerp(x, y, t: 0.6)
            XCTAssertEqual(Double(r.norms.0), x.reduce(0.0) { $0 + Double($1 * $1) }.squareRoot(), accuracy: 1e-4)
            let cosine = zip(x, y).reduce(0.0) { $0 + Double($1.0 * $1.1) } / (Double(r.norms.0) * Double(r.norms.1))
            XCTAssertEqual(r.angle, acos(cosine), accuracy: 1e-5)
        }
        // Parallel vectors merge exactly into their common direction; zero vectors take the other's.
        let p = LayerMerge.slerp([1, 2, 2], [2, 4, 4], t: 0.6)
        let third: [Double] = [1.0 / 3, 2.0 / 3, 2.0 / 3]
        for c in 0..<3 { XCTAssertEqual(Double(p.direction[c]), third[c], accuracy: 1e-6) }
        XCTAssertEqual(LayerMerge.slerp([0, 0, 0], [0, 3, 4], t: 0.6).direction, [0, 0.6, 0.8])
    }

    func testRetainingEverythingIsTheFullCache() throws {
        let (full, fc) = run(FullCachePolicy())
        let (mini, mc) = run(try MiniCache(retainFraction: 1))
        XCTAssertEqual(mini, full, "retain_fraction 1 must reproduce the full cache's logits exactly")
        XCTAssertEqual(mc.stats.bytesStored, fc.stats.bytesStored)
        XCTAssertEqual(mc.stores.flatMap { $0 }.map { $0.merged?.count ?? 0 }.reduce(0, +), 0)
    }

    /// After the prompt, each merged token of layers 2 and 3 restores to its own layer's norm times
    /// the SLERP of the two layers' full-cache directions; retained tokens are the full-cache rows.
    func testMergedTokensRestoreNormTimesDirection() throws {
        let (_, fc) = run(FullCachePolicy(), decode: false)
        let (_, mc) = run(try MiniCache(retainFraction: 0.05), decode: false)
        let d = fc.shape.headDim, T = Self.prompt.count
        let retained = Int((0.05 * Double(T)).rounded(.up))
        var k = [Float](repeating: 0, count: d), v = k
        for h in 0..<fc.shape.kvHeads {
            for l in [0, 1] { XCTAssertNil(mc.stores[l][h].merged, "layers below L/2 are not merged") }
            let lower = mc.stores[2][h], upper = mc.stores[3][h]
            XCTAssertEqual(lower.merged!.count, T - retained)
            XCTAssertEqual(upper.merged!.count, T - retained)
            XCTAssertEqual(lower.merged!.shared.rows, T - retained, "one shared direction row per merged token")
            for (l, st) in [(2, lower), (3, upper)] {
                XCTAssertEqual(st.count, T)
                for i in 0..<st.count {
                    let p = st.position(i)
                    st.key(i, into: &k); st.value(i, into: &v)
                    let fk = Array(UnsafeBufferPointer(start: fc.stores[l][h].keys + p * d, count: d))
                    let fv = Array(UnsafeBufferPointer(start: fc.stores[l][h].values + p * d, count: d))
                    if i >= st.compactCount {
                        XCTAssertEqual(k, fk, "retained token \(p) of layer \(l) must be the exact key")
                        XCTAssertEqual(v, fv)
                        continue
                    }
                    for (got, own, lo, up) in [(k, fk, fc.stores[2][h].keys, fc.stores[3][h].keys),
                                               (v, fv, fc.stores[2][h].values, fc.stores[3][h].values)] {
                        let x = (0..<d).map { Double(lo[p * d + $0]) }, y = (0..<d).map { Double(up[p * d + $0]) }
                        let e = geodesic(x, y, t: 0.6)
                        let n = own.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
                        for c in 0..<d { XCTAssertEqual(Double(got[c]), n * e[c], accuracy: 1e-4 * max(n, 1)) }
                    }
                }
            }
            // The retained tokens are the most divergent ones (max of key and value angle).
            let angles = (0..<T).map { p -> Double in
                func ang(_ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>) -> Double {
                    let x = (0..<d).map { Double(a[p * d + $0]) }, y = (0..<d).map { Double(b[p * d + $0]) }
                    let c = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } / (x.reduce(0) { $0 + $1 * $1 }.squareRoot() * y.reduce(0) { $0 + $1 * $1 }.squareRoot())
                    return acos(max(-1, min(1, c)))
                }
                return max(ang(fc.stores[2][h].keys, fc.stores[3][h].keys), ang(fc.stores[2][h].values, fc.stores[3][h].values))
            }
            let kept = Set((lower.compactCount..<lower.count).map { lower.position($0) })
            let top = Set(angles.indices.sorted { angles[$0] > angles[$1] }.prefix(retained))
            XCTAssertEqual(kept, top, "head \(h): retained tokens must be the top \(retained) by divergence")
        }
    }

    /// Bytes stored are read from the stores and equal what the merged layout holds:
    /// a merged token costs 2d + 4 floats for the pair (two directions, two norms per layer).
    func testBytesReflectTheMergedRepresentation() throws {
        let (_, fc) = run(FullCachePolicy())
        for fraction in [0.0, 0.05, 0.25] {
            let (logits, mc) = run(try MiniCache(retainFraction: fraction))
            XCTAssertTrue(logits.allSatisfy(\.isFinite))
            let d = mc.shape.headDim, T = Self.prompt.count + Self.decodeTokens.count
            var expected = 2 * mc.shape.kvHeads * T * 2 * d * 4      // layers 0 and 1, Float32
            var merged = 0
            for h in 0..<mc.shape.kvHeads {
                let m = mc.stores[2][h].merged!.count
                XCTAssertEqual(mc.stores[3][h].merged!.count, m)
                merged += m
                expected += m * (2 * d + 4) * 4 + (T - m) * 2 * 2 * d * 4
            }
            XCTAssertEqual(mc.stats.bytesStored, expected, "fraction \(fraction)")
            XCTAssertLessThan(mc.stats.bytesStored, fc.stats.bytesStored)
            if fraction == 0 {
                XCTAssertEqual(merged, mc.shape.kvHeads * T, "retain 0 merges every token, decoded ones too")
                // Pair layers: (2d + 4) / 4d of their full bytes.
                let pairFull = 2 * mc.shape.kvHeads * T * 2 * d * 4
                XCTAssertEqual(Double(mc.stats.bytesStored - pairFull), Double(pairFull) * Double(2 * d + 4) / Double(4 * d), accuracy: 0.5)
            } else {
                XCTAssertLessThan(merged, mc.shape.kvHeads * T)
                XCTAssertGreaterThan(merged, Int(Double(mc.shape.kvHeads * Self.prompt.count) * (1 - fraction)) - 2)
            }
        }
    }

    /// The merged-store kernel equals dense attention over a restored Float32 copy, for every row and a subset.
    func testMergedKernelMatchesRestoredCopy() throws {
        let (_, mc) = run(try MiniCache(retainFraction: 0.1), decode: false)
        let st = mc.stores[2][1], d = st.headDim, g = 3
        var rng = SeededRandom(seed: 3)
        let q = (0..<(g * d)).map { _ in rng.nextUniform() - 0.5 }
        let copy = st.dequantizedCopy()
        for indices in [nil, Array(stride(from: 0, to: st.count, by: 3)).map(Int32.init)] {
            let n = indices?.count ?? st.count
            var p1 = [Float](repeating: 0, count: g * n), p2 = p1
            var o1 = [Float](repeating: 0, count: g * d), o2 = o1
            let idx = indices.map { i in i.withUnsafeBufferPointer { $0 } }
            let read = st.rows.decode(q: q, groups: g, indices: idx, scale: 0.25, probs: &p1, out: &o1)
            _ = Attention.decode(q: q, groups: g, store: copy, indices: idx, scale: 0.25, probs: &p2, out: &o2)
            for i in 0..<(g * n) { XCTAssertEqual(p1[i], p2[i], accuracy: 1e-5) }
            for i in 0..<(g * d) { XCTAssertEqual(o1[i], o2[i], accuracy: 1e-5) }
            let m = (indices ?? (0..<st.count).map(Int32.init)).filter { Int($0) < st.compactCount }.count
            XCTAssertEqual(read.valueBytes, m * (d + 1) * 4 + (n - m) * d * 4, "a merged value row reads d + 1 floats")
        }
    }

    /// MiniCache + StreamingLLM (decode-time eviction): every layer keeps sinks + window; evicting a
    /// merged token in both layers frees its shared row; the bytes follow the store.
    func testStackWithStreamingLLM() throws {
        let budget = 48
        let (sl, sc) = run(try StreamingLLM(budget: .tokens(budget), sinks: 4))
        let (logits, mc) = run(try! PolicyStack([try StreamingLLM(budget: .tokens(budget), sinks: 4), try MiniCache(retainFraction: 0.05)]))
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        let T = Self.prompt.count + Self.decodeTokens.count
        let expectedPositions = Set(Array(0..<4) + Array((T - (budget - 4))..<T))
        let d = mc.shape.headDim
        var expected = 0
        for l in 0..<4 { for h in 0..<mc.shape.kvHeads {
            let st = mc.stores[l][h]
            XCTAssertEqual(Set((0..<st.count).map(st.position)), expectedPositions, "layer \(l) head \(h)")
            if let m = st.merged {
                XCTAssertEqual(m.shared.rows, m.count, "both layers evict the same positions: no orphan rows")
                expected += (st.count - m.count) * 2 * d * 4 + m.count * 2 * 4 + m.shared.payloadBytes / 2
            } else {
                expected += st.count * 2 * d * 4
            }
        } }
        XCTAssertEqual(mc.stats.bytesStored, expected)
        XCTAssertLessThan(mc.stats.bytesStored, sc.stats.bytesStored)
        XCTAssertGreaterThan(mc.stores[2][0].merged!.count, budget / 2, "the window's tokens are merged")
        // With retention 1 the stack is StreamingLLM alone (up to summation order: a store that may
        // hold merged tokens evicts by in-order compaction instead of moving the last slot).
        let (same, _) = run(try! PolicyStack([try StreamingLLM(budget: .tokens(budget), sinks: 4), try MiniCache(retainFraction: 1)]))
        let err = zip(same, sl).map { abs($0 - $1) }.max()!, scale = sl.map { abs($0) }.max()!
        XCTAssertLessThanOrEqual(err / scale, 1e-5, "retention 1 changed StreamingLLM's logits by \(err)")
    }

    /// Evictions that differ between the two layers of a pair (H2O scores per layer) keep a shared
    /// row while either layer refers to it; H2O's per-token scores follow the merge's reordering.
    func testStackWithPerLayerEviction() throws {
        let (logits, mc) = run(try! PolicyStack([try H2O(budget: .tokens(40)), try MiniCache(retainFraction: 0.05)]))
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        for h in 0..<mc.shape.kvHeads {
            let a = mc.stores[2][h], b = mc.stores[3][h]
            XCTAssertLessThanOrEqual(a.count, 40); XCTAssertLessThanOrEqual(b.count, 40)
            let rowsA = Set(a.merged!.row), rowsB = Set(b.merged!.row)
            XCTAssertEqual(rowsA.union(rowsB).count, a.merged!.shared.rows, "live rows are exactly those referred to")
            for st in [a, b] {
                let pos = (0..<st.count).map(st.position)
                XCTAssertEqual(Set(pos).count, pos.count)
            }
        }
        XCTAssertEqual(mc.stats.bytesStored, mc.stores.flatMap { $0 }.reduce(0) { $0 + $1.payloadBytes })
    }

    /// A task's question is fed with compression off: its tokens are never merged, and a long
    /// prompt (several 512-row prefill chunks) is merged once, at the prefill's end.
    func testQuestionStaysExactAndChunkedPrefillMergesOnce() throws {
        let m = Self.model, cache = m.makeCache(policy: try MiniCache(retainFraction: 0.05))
        let prompt = (0..<1100).map { ($0 * 53 + 7) % 256 }
        _ = m.forward(prompt, startPosition: 0, cache: cache, phase: .prefill)
        let merged = cache.stores[2][0].merged!.count
        XCTAssertEqual(merged, 1100 - Int((0.05 * 1100).rounded(.up)))
        cache.compressionEnabled = false
        let question = [9, 8, 7, 6, 5]
        _ = m.forward(question, startPosition: 1100, cache: cache, phase: .prefill)
        cache.compressionEnabled = true
        for l in [2, 3] { for h in 0..<2 {
            let st = cache.stores[l][h]
            XCTAssertEqual(st.merged!.count, merged, "question tokens must not be merged")
            let fp = Set((st.compactCount..<st.count).map(st.position))
            XCTAssertTrue(fp.isSuperset(of: 1100..<1105), "layer \(l) head \(h): the question stays Float32")
        } }
        // Decoding merges new tokens again (against the prompt's threshold).
        for i in 0..<20 { _ = m.forward([(i * 31) % 256], startPosition: 1105 + i, cache: cache, phase: .decode) }
        XCTAssertGreaterThan(cache.stores[2][0].merged!.count, merged)
        XCTAssertTrue(Set((cache.stores[2][0].compactCount..<cache.stores[2][0].count).map(cache.stores[2][0].position)).isSuperset(of: 1100..<1105))
    }

    /// SnapKV evicts at the prefill's end, then the survivors are merged; bytes follow the store.
    func testStackWithSnapKV() throws {
        let (logits, mc) = run(try! PolicyStack([try SnapKV(budget: .tokens(64), window: 8), try MiniCache(retainFraction: 0.05)]))
        XCTAssertTrue(logits.allSatisfy(\.isFinite))
        for h in 0..<mc.shape.kvHeads {
            let a = mc.stores[2][h], b = mc.stores[3][h]
            XCTAssertEqual(a.count, 64 + Self.decodeTokens.count)
            // Only positions both layers kept can merge; each merged row is referred to by both.
            let pa = Set((0..<a.merged!.count).map(a.position)), pb = Set((0..<b.merged!.count).map(b.position))
            XCTAssertEqual(pa, pb)
            XCTAssertEqual(a.merged!.shared.rows, pa.count)
        }
        XCTAssertEqual(mc.stats.bytesStored, mc.stores.flatMap { $0 }.reduce(0) { $0 + $1.payloadBytes })
    }

    func testParametersAndStacksAreValidated() {
        XCTAssertThrowsError(try MiniCache(t: 1.5))
        XCTAssertThrowsError(try MiniCache(retainFraction: -0.1))
        XCTAssertThrowsError(try MiniCache(startLayer: -1))
        XCTAssertThrowsError(try PolicySpec.stack([PolicySpec(MiniCache.Config(startLayer: nil, t: 0.6, retainFraction: 0.05)),
                                                   PolicySpec(KIVI.Config(bits: 2, groupSize: 32, residual: 128))]).make())
        XCTAssertThrowsError(try PolicySpec.stack([PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .all, map: nil)),
                                                   PolicySpec(MiniCache.Config(startLayer: nil, t: 0.6, retainFraction: 0.05))]).make())
        XCTAssertNoThrow(try PolicySpec.stack([PolicySpec(StreamingLLM.Config(budget: .tokens(64), sinks: 4, schedule: .always)),
                                               PolicySpec(MiniCache.Config(startLayer: 1, t: 0.6, retainFraction: 0.05))]).make())
        XCTAssertEqual(LayerMergeSpec().pairs(layers: 8).map { [$0.0, $0.1] }, [[4, 5], [6, 7]])
        XCTAssertEqual(LayerMergeSpec(startLayer: 1).pairs(layers: 6).map { [$0.0, $0.1] }, [[1, 2], [3, 4]])
        XCTAssertTrue(PolicySpec.names.contains("minicache"))
        XCTAssertEqual(PolicySpec(MiniCache.Config(startLayer: nil, t: 0.6, retainFraction: 0.05)).family, "sharing")
    }
}
