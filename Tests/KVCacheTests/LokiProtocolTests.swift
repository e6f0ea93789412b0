import XCTest
import KVCacheCore
import KVPolicies

/// Loki's reference protocol (top-k per query head on every query row, prefill included) against
/// hpcgroup/loki's own mask_attn_pca_topk on one attention layer (fixture:
/// Tests/KVCacheTests/Fixtures/loki/expected.json from scripts/fixtures/make_loki_fixtures.py).
final class LokiProtocolTests: XCTestCase {
    struct Fixture: Decodable {
        let heads: Int, kv_heads: Int, head_dim: Int, rank: Int, k_fraction: Double, prefill_rows: Int
        let queries: [[Float]], keys: [[Float]], values: [[Float]]   // [T + 1][H*d], [T + 1][Hkv*d]
        let bases: [[Float]]                                         // [Hkv][d*d]
        let prefill_output: [[Float]]                                // [T][H*d]
        let decode_output: [Float]                                   // [H*d]
    }
    static let f = try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf:
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/loki/expected.json")))

    static var calibration: LokiCalibration {
        let n = f.kv_heads * f.head_dim
        return LokiCalibration(layers: 1, kvHeads: f.kv_heads, headDim: f.head_dim, bases: f.bases.flatMap { $0 },
                               means: [Float](repeating: 0, count: n), explainedVariance: [Float](repeating: 1, count: n),
                               explainedVarianceRatio: [Float](repeating: 1 / Float(f.head_dim), count: n), tokens: 0)
    }

    func loki(gqa: SelectionGQA = .queryHead, phases: Loki.Phases = .prefillAndDecode) throws -> Loki {
        try Loki(calibration: Self.calibration, rank: .dims(Self.f.rank), topK: .fraction(Self.f.k_fraction), gqa: gqa, phases: phases)
    }

    /// The fixture's prefill rows (one chunk) then one decode row through `KVCache.attention`.
    func run(_ policy: CachePolicy, compressPrefill: Bool = true) -> (prefill: [Float], decode: [Float], cache: KVCache) {
        let f = Self.f, T = f.prefill_rows, w = f.heads * f.head_dim
        let cache = KVCache(shape: CacheShape(layers: 1, queryHeads: f.heads, kvHeads: f.kv_heads, headDim: f.head_dim), policy: policy)
        func step(_ rows: Range<Int>, _ phase: Phase, _ out: inout [Float]) {
            let q = Array(f.queries[rows].joined()), k = Array(f.keys[rows].joined()), v = Array(f.values[rows].joined())
            q.withUnsafeBufferPointer { qb in k.withUnsafeBufferPointer { kb in v.withUnsafeBufferPointer { vb in
                out.withUnsafeMutableBufferPointer { ob in
                    cache.attention(layer: 0, phase: phase, rows: rows.count, queries: qb.baseAddress!, keys: kb.baseAddress!,
                                    values: vb.baseAddress!, positions: Array(rows), output: ob.baseAddress!)
                }
            } } }
            cache.endStep(phase: phase)
        }
        var prefill = [Float](repeating: 0, count: T * w), decode = [Float](repeating: 0, count: w)
        cache.compressionEnabled = compressPrefill
        step(0..<T, .prefill, &prefill)
        cache.compressionEnabled = true
        step(T..<(T + 1), .decode, &decode)
        return (prefill, decode, cache)
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? .infinity }

    func testPrefillAndDecodeMatchTheReference() throws {
        let f = Self.f
        let r = run(try loki())
        XCTAssertLessThanOrEqual(maxDiff(r.prefill, f.prefill_output.flatMap { $0 }), 2e-5, "prefill rows")
        XCTAssertLessThanOrEqual(maxDiff(r.decode, f.decode_output), 2e-5, "decode row")
        // The decode-only, group-summed protocol (KVLab's before) does not reproduce the reference.
        let old = run(try loki(gqa: .kvGroup, phases: .decode))
        XCTAssertGreaterThan(maxDiff(old.prefill, f.prefill_output.flatMap { $0 }), 0.1)
        XCTAssertGreaterThan(maxDiff(old.decode, f.decode_output), 1e-3)
    }

    /// A question prefilled with compression off is attended densely (the prefill selects nothing).
    func testUncompressedPrefillIsDense() throws {
        let dense = run(try loki(phases: .decode)).prefill
        XCTAssertEqual(run(try loki(), compressPrefill: false).prefill, dense)
        XCTAssertNotEqual(run(try loki()).prefill, dense)
    }

    /// Prefill reads are metered per row and KV head: the union of the group's lists (all visible
    /// tokens for rows that see <= k) plus r dims of every visible key for the rows Loki scored.
    func testPrefillBytesReadAreMetered() throws {
        let f = Self.f, T = f.prefill_rows, d = f.head_dim, g = f.heads / f.kv_heads
        let k = Int(f.k_fraction * Double(T))
        for gqa in SelectionGQA.allCases {
            let rec = RowRecorder(try loki(gqa: gqa))
            let cache = run(rec).cache
            var expected = 0
            for (lists, perHead, visible, rows) in rec.calls {
                for (i, row) in rows.enumerated() {
                    let v = visible[row]
                    var read = Set<Int32>()
                    for m in 0..<(perHead ? g : 1) { read.formUnion(lists[m * rows.count + i] ?? (0..<Int32(v)).map { $0 }) }
                    expected += read.count * d * 4 * 2 + (v > k ? v * f.rank * 4 : 0)
                }
            }
            XCTAssertEqual(rec.calls.count, f.kv_heads, "one block per KV head")
            XCTAssertEqual(cache.stats.prefillBytesRead, expected, gqa.rawValue)
            let full = run(FullCachePolicy()).cache.stats.prefillBytesRead
            XCTAssertEqual(full, f.kv_heads * (T * (T + 1) / 2) * d * 4 * 2, "dense prefill: every visible row")
            XCTAssertLessThan(cache.stats.prefillBytesRead, full)
        }
    }

    func testStacksWithAnotherSelectorAreRejected() {
        let loki = PolicySpec.loki(calibration: "x.h5", rank: .fraction(0.25), topK: .fraction(0.25), gqa: .queryHead)
        let quest = PolicySpec.quest(budget: 64, pageSize: 16, denseLayers: 0, gqa: .kvGroup)
        XCTAssertThrowsError(try PolicySpec.stack([quest, loki]).make()) { e in
            XCTAssertTrue(e.localizedDescription.contains("kv_group"), e.localizedDescription)
        }
        XCTAssertTrue(loki.label.contains("gqa=query_head") && loki.label.contains("phases=prefill+decode"), loki.label)
    }
}

/// Forwards to a policy and records what its `selectRows` returned.
final class RowRecorder: CachePolicy {
    let inner: CachePolicy
    var calls: [(lists: [[Int32]?], perHead: Bool, visible: [Int], rows: Range<Int>)] = []
    init(_ inner: CachePolicy) { self.inner = inner }
    var name: String { inner.name }
    func keyBasis(layer: Int, head: Int) -> [Float]? { inner.keyBasis(layer: layer, head: head) }
    func bind(shape: CacheShape) { inner.bind(shape: shape) }
    func didAppend(_ step: LayerStep) { inner.didAppend(step) }
    func didRetain(layer: Int, head: Int, kept: [Int]) { inner.didRetain(layer: layer, head: head, kept: kept) }
    func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? { inner.select(step, head: head, candidates: candidates) }
    func selectsRows(_ phase: Phase) -> Bool { inner.selectsRows(phase) }
    func selectRows(_ step: LayerStep, head: Int, rows: Range<Int>, visible: [Int]) -> RowSelection? {
        let s = inner.selectRows(step, head: head, rows: rows, visible: visible)
        if step.phase == .prefill {
            calls.append((s?.lists ?? Array(repeating: nil, count: rows.count), s?.perQueryHead ?? false, visible, rows))
        }
        return s
    }
    var metadataBytes: Int { inner.metadataBytes }
}
