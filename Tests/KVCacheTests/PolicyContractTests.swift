import XCTest
import KVCache
import KVModel
import KVPolicies

/// One contract, run over every policy and stack (kvpress tests/default_presses.py style).
final class PolicyContractTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,std=0.15,seed=3").load()
    static let prompt = (0..<96).map { ($0 * 37 + 11) % 256 }
    static let decodeTokens = [5, 77, 130, 9, 200, 31, 64, 18]

    /// Every policy at a given budget (tokens), with decode-time eviction where the policy supports it.
    static func policies(budget n: Int) -> [CachePolicy] {
        let b = Budget.tokens(n)
        return [
            try! StreamingLLM(budget: b, sinks: 4),
            try! StreamingLLM(budget: b, sinks: 4, schedule: .prefill),
            try! StreamingLLM(budget: b, sinks: 4, positionShift: true),
            try! H2O(budget: b),
            try! H2O(budget: b, scoring: .observed),
            try! SnapKV(budget: b, window: 8, kernel: 5),
            try! SnapKV(budget: b, window: 8, kernel: 3, pooling: .max),
            try! PyramidKV(budget: b, window: 8),
            try! TOVA(budget: b),
            try! Knorm(budget: b),
            try! Knorm(budget: b, schedule: .always),
            try! PolicyStack([try! StreamingLLM(budget: b), try! Knorm(budget: b, schedule: .always)]),
            try! PolicyStack([try! SnapKV(budget: b, window: 8), try! H2O(budget: b)]),
            try! PolicyStack([try! SnapKV(budget: b, window: 8), try! KIVI(bits: 16)]),   // KIVI's codes: KIVITests
        ]
    }

    static let calibration = SelectionFixtures.calibration(model)

    /// Every selection policy (Quest, Loki, oracle top-k) reading at most about `n` tokens per step.
    /// They keep every token stored: the store checks run without a storage budget.
    static func selectionPolicies(budget n: Int) -> [CachePolicy] {
        [
            try! Quest(tokenBudget: max(n, 8), pageSize: 8, denseLayers: 0),
            try! Quest(tokenBudget: max(n, 8), pageSize: 8, denseLayers: 0, gqa: .queryHead),
            try! Loki(calibration: calibration, rank: .fraction(0.5), topK: .tokens(n)),
            try! Loki(calibration: calibration, rank: .explainedVariance(0.9), topK: .tokens(n), gqa: .queryHead),
            try! OracleTopK(topK: .tokens(n)),
            try! OracleTopK(topK: .tokens(n), gqa: .queryHead),
            try! PolicyStack([try! SnapKV(budget: .tokens(max(n, 16)), window: 8), try! Quest(tokenBudget: max(n, 8), pageSize: 8, denseLayers: 0)]),
            try! PolicyStack([try! Quest(tokenBudget: max(n, 8), pageSize: 8, denseLayers: 0), try! KIVI(bits: 16)]),
        ]
    }

    /// Runs prefill + decode, checking invariants after every step; returns all logits.
    func run(_ policy: CachePolicy, budget: Int?, file: StaticString = #filePath, line: UInt = #line) -> [Float] {
        let m = Self.model
        let cache = m.makeCache(policy: policy)
        var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        checkStore(cache, budget: budget, policy: policy.name, file: file, line: line)
        for (i, t) in Self.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
            checkStore(cache, budget: budget, policy: policy.name, decode: true, file: file, line: line)
        }
        return logits
    }

    func checkStore(_ cache: KVCache, budget: Int?, policy: String, decode: Bool = false,
                    file: StaticString, line: UInt) {
        var payload = 0
        var heldPerHead = [Int](repeating: 0, count: cache.shape.kvHeads)
        // Prefill-only policies append decode tokens beyond the budget; PyramidKV's budget is a
        // mean over layers (lower layers keep more).
        let bound = budget.map { $0 + (decode && !policy.contains("always") ? cache.stats.decodeSteps : 0) }
        let pyramid = policy.contains("pyramidkv")
        for (l, layer) in cache.stores.enumerated() {
            for (h, s) in layer.enumerated() {
                payload += s.count * s.headDim * 4 * 2
                // Each token at most once; positions increase wherever the store says it is ordered
                // (decode-time evictions move the last token into the freed slot).
                let pos = (0..<s.count).map { s.position($0) }
                XCTAssertEqual(Set(pos).count, pos.count, "\(policy): layer \(l) head \(h) holds a position twice", file: file, line: line)
                if s.isOrdered && pos != pos.sorted() {
                    XCTFail("\(policy): layer \(l) head \(h) claims order but positions are not increasing", file: file, line: line)
                }
                heldPerHead[h] += s.count
                if let b = bound, !pyramid {
                    XCTAssertLessThanOrEqual(s.count, b, "\(policy): layer \(l) head \(h) holds \(s.count) > budget \(b)", file: file, line: line)
                }
            }
        }
        if let b = bound {
            for (h, n) in heldPerHead.enumerated() {
                XCTAssertLessThanOrEqual(n, b * cache.shape.layers, "\(policy): head \(h) holds \(n) over all layers", file: file, line: line)
            }
        }
        XCTAssertEqual(cache.stats.bytesStored, payload, "\(policy): reported bytes differ from the store", file: file, line: line)
    }

    func testBudgetAtLeastContextGivesFullCacheLogits() {
        let full = run(FullCachePolicy(), budget: nil)
        for p in Self.policies(budget: Self.prompt.count + Self.decodeTokens.count) {
            let logits = run(p, budget: nil)
            XCTAssertEqual(logits, full, "\(p.name) with budget >= context changed the logits")
        }
        for p in Self.selectionPolicies(budget: Self.prompt.count + Self.decodeTokens.count) {
            let logits = run(p, budget: nil)
            if p is Loki {
                // Keys stored in the calibrated basis: equal up to float rounding of the rotation.
                let scale = full.map { abs($0) }.max()!
                let err = zip(logits, full).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(err / scale, 1e-4, "\(p.name) with k = T changed the logits by \(err)")
            } else {
                XCTAssertEqual(logits, full, "\(p.name) with budget >= context changed the logits")
            }
        }
    }

    func testRetainedNeverExceedsBudgetAndBytesMatchStore() {
        for p in Self.policies(budget: 40) { _ = run(p, budget: 40) }
        for p in Self.selectionPolicies(budget: 40) { _ = run(p, budget: nil) }
    }

    func testEvictionReallyFreesMemory() {
        let fullCache = Self.model.makeCache()
        _ = Self.model.forward(Self.prompt, startPosition: 0, cache: fullCache, phase: .prefill)
        for p in Self.policies(budget: 40) {
            let cache = Self.model.makeCache(policy: p)
            _ = Self.model.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
            let ratio = Double(cache.stats.bytesStored) / Double(fullCache.stats.bytesStored)
            XCTAssertLessThanOrEqual(ratio, 40.0 / 96.0 + 1e-9, "\(p.name) stores \(ratio) of the full cache")
            XCTAssertGreaterThan(ratio, 0, p.name)
        }
    }

    /// Decode-time eviction with slot reuse keeps exactly what in-order compaction would keep.
    func testStreamingDuringDecodeKeepsSinksAndNewest() throws {
        let cache = Self.model.makeCache(policy: try StreamingLLM(budget: .tokens(24), sinks: 4))
        let m = Self.model
        _ = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        for (i, t) in Self.decodeTokens.enumerated() {
            _ = m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
        }
        let total = Self.prompt.count + Self.decodeTokens.count
        let expected = Set(0..<4).union(Set((total - 20)..<total))
        for layer in cache.stores { for s in layer {
            XCTAssertEqual(Set((0..<s.count).map { s.position($0) }), expected)
        } }
    }

    func testDeterministic() {
        for (a, b) in zip(Self.policies(budget: 40), Self.policies(budget: 40)) {
            XCTAssertEqual(run(a, budget: 40), run(b, budget: 40), "\(a.name) is not deterministic")
        }
        for (a, b) in zip(Self.selectionPolicies(budget: 40), Self.selectionPolicies(budget: 40)) {
            XCTAssertEqual(run(a, budget: nil), run(b, budget: nil), "\(a.name) is not deterministic")
        }
    }

    func testBudgetBelowContextChangesSomething() {
        let full = run(FullCachePolicy(), budget: nil)
        for p in Self.policies(budget: 24) {
            XCTAssertNotEqual(run(p, budget: 24), full, "\(p.name) at budget 24 of 96 changed nothing")
        }
        for p in Self.selectionPolicies(budget: 24) {
            XCTAssertNotEqual(run(p, budget: nil), full, "\(p.name) reading 24 of 96 tokens changed nothing")
        }
    }
}
