import Foundation
import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTestSupport
import KVTensor

extension SelectionTests {
    func testQuestPageSummariesFollowEvictions() throws {
        // H2O evicts one token per decode step by moving the last token into the hole; SnapKV
        // compacts once at the end of prefill; StreamingLLM + restore order.
        let stacks: [() throws -> (PolicyStack, Quest)] = [
            { let q = try Quest(tokenBudget: 16, pageSize: 4, denseLayers: 0); return (try! PolicyStack([try H2O(budget: .tokens(48)), q]), q) },
            { let q = try Quest(tokenBudget: 16, pageSize: 4, denseLayers: 0); return (try! PolicyStack([try SnapKV(budget: .tokens(40), window: 8), q]), q) },
            { let q = try Quest(tokenBudget: 16, pageSize: 4, denseLayers: 0); return (try! PolicyStack([try StreamingLLM(budget: .tokens(40)), q]), q) },
        ]
        for make in stacks {
            let (stack, quest) = try make()
            let cache = Self.model.makeCache(policy: stack)
            _ = Self.model.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
            for (i, t) in Self.decodeTokens.enumerated() {
                _ = Self.model.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
                for l in 0..<2 { for h in 0..<2 {
                    let st = cache.stores[l][h], d = st.headDim
                    var fresh: [Float] = []
                    for p in 0..<((st.count + 3) / 4) {
                        let toks = (p * 4)..<min(p * 4 + 4, st.count)
                        fresh += (0..<d).map { i in toks.map { st.keys[$0 * d + i] }.max()! }
                        fresh += (0..<d).map { i in toks.map { st.keys[$0 * d + i] }.min()! }
                    }
                    XCTAssertEqual(quest.pageSummaries(layer: l, head: h), fresh, "\(stack.name): layer \(l) head \(h) step \(i)")
                } }
            }
        }
    }

    /// Loki's contiguous low-rank key copy follows appends and every kind of eviction: the same
    /// selections (hence logits) as scoring the store's strided rows directly.
    func testLokiLowRankCopyFollowsEvictions() throws {
        let cal = Self.calibration
        let evictions: [() throws -> CachePolicy] = [
            { try H2O(budget: .tokens(48)) }, { try SnapKV(budget: .tokens(40), window: 8) },
            { try StreamingLLM(budget: .tokens(40)) }, { try Knorm(budget: .tokens(40), schedule: .always) },
        ]
        for ev in evictions {
            for gqa in SelectionGQA.allCases {
                let copy = try Loki(calibration: cal, rank: .dims(5), topK: .tokens(12), gqa: gqa)
                let strided = try Loki(calibration: cal, rank: .dims(5), topK: .tokens(12), gqa: gqa, lowRankCopy: false)
                let a = run(try! PolicyStack([try ev(), copy])), b = run(try! PolicyStack([try ev(), strided]))
                XCTAssertEqual(a.0, b.0, "\(a.1.policy.name)")
                XCTAssertEqual(a.1.stats.decodeBytesRead, b.1.stats.decodeBytesRead)
                XCTAssertGreaterThan(copy.metadataBytes, strided.metadataBytes)
            }
        }
    }

    func testSelectionStackedAfterEvictionReadsLessAndStoresTheSame() throws {
        let cal = Self.calibration
        let snap = { try SnapKV(budget: .tokens(48), window: 8) }
        let alone = run(try snap()).1
        for sel in [try Quest(tokenBudget: 16, pageSize: 8, denseLayers: 0) as CachePolicy,
                    try Loki(calibration: cal, rank: .fraction(0.25), topK: .fraction(0.25)),
                    try Loki(calibration: cal, rank: .explainedVariance(0.9), topK: .tokens(12))] {
            let (logits, stacked) = run(try! PolicyStack([try snap(), sel]))
            XCTAssertFalse(logits.contains { !$0.isFinite }, sel.name)
            XCTAssertEqual(stacked.stats.bytesStored, alone.stats.bytesStored, "snapkv + \(sel.name) stores differently")
            XCTAssertEqual(stacked.stats.peakBytesStored, alone.stats.peakBytesStored, sel.name)
            XCTAssertLessThan(stacked.stats.decodeBytesRead, alone.stats.decodeBytesRead, "snapkv + \(sel.name) reads no less")
        }
    }

    func testQuestDenseLayersAndShortContextsAreDense() throws {
        let full = run(FullCachePolicy()).0
        // Every layer below denseLayers (the tiny model has 2): no selection at all.
        XCTAssertEqual(run(try Quest(tokenBudget: 16, denseLayers: 2)).0, full)
        XCTAssertNotEqual(run(try Quest(tokenBudget: 16, pageSize: 8, denseLayers: 1)).0, full)
    }

    // MARK: Calibration

    func testCalibrationFitsALowRankSubspace() throws {
        // Keys drawn from a 3-dimensional subspace (plus an offset): 3 directions explain everything.
        let d = 16, shape = CacheShape(layers: 1, queryHeads: 2, kvHeads: 1, headDim: d)
        let recorder = KeyCovarianceRecorder()
        let cache = KVCache(shape: shape, policy: recorder)
        let basis = SelectionFixtures.random(3 * d, seed: 1)
        var rng = SeededRandom(seed: 2)
        let rows = 64
        for chunk in 0..<4 {
            var keys = [Float](repeating: 0, count: rows * d)
            for r in 0..<rows {
                let z = (0..<3).map { _ in rng.nextNormal() }
                for i in 0..<d { keys[r * d + i] = 5 + z[0] * basis[i] + z[1] * basis[d + i] + 0.5 * z[2] * basis[2 * d + i] }
            }
            let q = [Float](repeating: 0.1, count: rows * 2 * d), v = keys
            var out = [Float](repeating: 0, count: rows * 2 * d)
            cache.attention(layer: 0, phase: .prefill, rows: rows, queries: q, keys: keys, values: v,
                            positions: Array((chunk * rows)..<((chunk + 1) * rows)), output: &out)
            cache.endStep(phase: .prefill)
        }
        let cal = try LokiCalibration.fit(recorder)
        XCTAssertEqual(cal.tokens, 4 * rows)
        let ratios = cal.ratios(layer: 0, head: 0)
        XCTAssertEqual(Double(ratios.reduce(0, +)), 1, accuracy: 1e-5)
        XCTAssertEqual(ratios, ratios.sorted(by: >))
        XCTAssertEqual(Double(ratios[0...2].reduce(0, +)), 1, accuracy: 1e-5)
        XCTAssertEqual(cal.rankReaching(0.999, layer: 0, head: 0), 3)
        XCTAssertEqual(Double(cal.means[0]), 5 + 0, accuracy: 0.5)
        // Orthonormal columns.
        let p = cal.basis(layer: 0, head: 0)
        for a in 0..<d { for b in 0..<d {
            let s = (0..<d).reduce(Float(0)) { $0 + p[$1 * d + a] * p[$1 * d + b] }
            XCTAssertEqual(s, a == b ? 1 : 0, accuracy: 1e-5)
        } }
    }

    func testCalibrationFileRoundTripAndRanks() throws {
        let cal = Self.calibration
        let path = NSTemporaryDirectory() + "kvlab-loki-\(getpid()).h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        var tagged = cal
        tagged.attributes = ["model": "synthetic:tiny"]
        try tagged.save(to: path)
        let back = try LokiCalibration.load(path)
        XCTAssertEqual(back, tagged)
        XCTAssertEqual(back.layers, 2); XCTAssertEqual(back.kvHeads, 2); XCTAssertEqual(back.headDim, 16)
        // PolicySpec builds Loki from the file; ranks resolve per layer.
        let spec = PolicySpec.loki(calibration: path, rank: .explainedVariance(0.9), topK: .fraction(0.5), gqa: .kvGroup)
        let loki = try XCTUnwrap(try spec.make() as? Loki)
        XCTAssertEqual(loki.ranks, (0..<2).map { cal.referenceRank(0.9, layer: $0) })
        XCTAssertEqual(spec.family, "selection")
        XCTAssertEqual(spec.kind, "loki")
        XCTAssertThrowsError(try PolicySpec.loki(calibration: path + ".missing", rank: .fraction(0.25), topK: .fraction(0.25), gqa: .kvGroup).make())
        // The reference's threshold rank: directions whose cumulative ratio stays below t.
        for l in 0..<2 {
            let r = cal.referenceRank(0.9, layer: l)
            XCTAssertTrue(r >= 1 && r <= 16)
            XCTAssertLessThanOrEqual(r, (0..<2).map { cal.rankReaching(0.9, layer: l, head: $0) }.max()!)
        }
    }

    func testSpecsAndParameterValidation() throws {
        XCTAssertThrowsError(try Quest(tokenBudget: 8, pageSize: 16))
        XCTAssertThrowsError(try Quest(tokenBudget: 64, pageSize: 0))
        XCTAssertThrowsError(try Quest(tokenBudget: 64, denseLayers: -1))
        XCTAssertThrowsError(try OracleTopK(topK: .tokens(0)))
        XCTAssertThrowsError(try OracleTopK(topK: .fraction(1.5)))
        XCTAssertThrowsError(try Loki(calibration: Self.calibration, rank: .dims(17)))
        XCTAssertThrowsError(try Loki(calibration: Self.calibration, rank: .fraction(0)))
        XCTAssertThrowsError(try Loki(calibration: Self.calibration, rank: .explainedVariance(1.2)))
        let q = PolicySpec.quest(budget: 256, pageSize: 16, denseLayers: 2, gqa: .kvGroup)
        XCTAssertEqual(q.label, "quest(budget=256,page_size=16,dense_layers=2,gqa=kv_group)")
        XCTAssertEqual(q.family, "selection")
        XCTAssertEqual(q.budgetForm?.kind, "budget"); XCTAssertEqual(q.budgetForm?.value, 256)
        XCTAssertTrue(try q.make() is Quest)
        let o = PolicySpec(OracleTopK.Config(topK: .fraction(0.25), gqa: .queryHead))
        XCTAssertEqual(o.label, "oracle_topk(k_fraction=0.25,gqa=query_head)")
        XCTAssertTrue(try o.make() is OracleTopK)
        XCTAssertTrue(PolicySpec.names.contains("quest") && PolicySpec.names.contains("loki") && PolicySpec.names.contains("oracle_topk"))
    }
}
