import Foundation
import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor
import KVTestSupport

/// Wraps a selection policy, checking every selection it makes: a subset of the candidates (or of
/// the store), increasing, within `bound` tokens when the step is narrowed at all.
final class SelectionCheck: CachePolicy {
    let inner: CachePolicy
    let bound: Int
    private let lock = NSLock()             // select may run concurrently for different heads
    private var _violations: [String] = []
    private var _narrowed = 0
    var violations: [String] { lock.lock(); defer { lock.unlock() }; return _violations }
    var narrowed: Int { lock.lock(); defer { lock.unlock() }; return _narrowed }
    init(_ inner: CachePolicy, bound: Int) { self.inner = inner; self.bound = bound }
    var name: String { inner.name }
    var queryWindow: Int { inner.queryWindow }
    func keyBasis(layer: Int, head: Int) -> [Float]? { inner.keyBasis(layer: layer, head: head) }
    func bind(shape: CacheShape) { inner.bind(shape: shape) }
    func didAppend(_ step: LayerStep) { inner.didAppend(step) }
    func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        let out = inner.select(step, head: head, candidates: candidates)
        lock.lock(); defer { lock.unlock() }
        guard let sel = out else {
            if candidates != nil { _violations.append("widened candidates to all tokens") }
            return nil
        }
        let pool = Set(candidates ?? (0..<Int32(step.stores[head].count)).map { $0 })
        if !sel.allSatisfy(pool.contains) { _violations.append("layer \(step.layer): selected outside the candidates") }
        if sel != sel.sorted() || Set(sel).count != sel.count { _violations.append("layer \(step.layer): not strictly increasing") }
        if sel.count > bound { _violations.append("layer \(step.layer): \(sel.count) tokens > bound \(bound)") }
        if sel.count < pool.count { _narrowed += 1 }
        return sel
    }
    func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {
        inner.observe(step, head: head, indices: indices, probs: probs, count: n)
    }
    func retain(_ step: LayerStep, head: Int) -> [Int]? { inner.retain(step, head: head) }
    func didRetain(layer: Int, head: Int, kept: [Int]) { inner.didRetain(layer: layer, head: head, kept: kept) }
    var metadataBytes: Int { inner.metadataBytes }
    func reset() { inner.reset() }
}

final class SelectionTests: XCTestCase {
    static let model = try! ModelSource.parse("synthetic:tiny,std=0.15").load()
    static let calibration = SelectionFixtures.calibration(model)
    static let prompt = (0..<96).map { ($0 * 53 + 7) % 256 }
    static let decodeTokens = [3, 141, 59, 26, 53, 58, 97, 93, 23, 84]

    /// Prefill + decode; returns all logits and the cache.
    func run(_ policy: CachePolicy) -> ([Float], KVCache) {
        let m = Self.model
        let cache = m.makeCache(policy: policy)
        var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        for (i, t) in Self.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
        }
        return (logits, cache)
    }

    /// max |a - b| / max |b| <= rel.
    func assertClose(_ a: [Float], _ b: [Float], rel: Float, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, message, file: file, line: line)
        let scale = max(b.map { abs($0) }.max() ?? 0, 1e-30)
        let err = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(err / scale, rel, "\(message): relative error \(err / scale)", file: file, line: line)
    }

    var context: Int { Self.prompt.count + Self.decodeTokens.count }

    // MARK: Exactness

    func testQuestWithBudgetAtLeastContextGivesFullLogits() throws {
        let full = run(FullCachePolicy()).0
        for gqa in SelectionGQA.allCases {
            for page in [1, 16] {
                let q = try Quest(tokenBudget: context + page, pageSize: page, denseLayers: 0, gqa: gqa)
                XCTAssertEqual(run(q).0, full, "\(q.name) with budget >= context changed the logits")
            }
        }
    }

    func testOracleWithKEqualToContextGivesFullLogits() throws {
        let full = run(FullCachePolicy()).0
        for gqa in SelectionGQA.allCases {
            for k in [SelectionSize.tokens(context), .fraction(1)] {
                let p = try OracleTopK(topK: k, gqa: gqa)
                XCTAssertEqual(run(p).0, full, "\(p.name) changed the logits")
            }
        }
    }

    /// r = d and k = T: the only difference is the rotation of the stored keys (float rounding).
    func testLokiFullRankAllTokensGivesFullLogits() throws {
        let full = run(FullCachePolicy()).0
        for gqa in SelectionGQA.allCases {
            let loki = try Loki(calibration: Self.calibration, rank: .fraction(1), topK: .fraction(1), gqa: gqa)
            assertClose(run(loki).0, full, rel: 1e-4, loki.name)
            // The identity basis rotates nothing: bit-identical.
            let id = LokiCalibration.identity(layers: 2, kvHeads: 2, headDim: 16)
            XCTAssertEqual(run(try Loki(calibration: id, rank: .dims(16), topK: .tokens(10_000), gqa: gqa)).0, full)
        }
    }

    /// An explicit all-token selection attends exactly as the dense path (same kernel, same order).
    func testSelectingEveryIndexEqualsDense() {
        let st = SelectionFixtures.randomStore(n: 77, d: 16, seed: 5)
        let q = SelectionFixtures.random(2 * 16, seed: 6)
        var p1 = [Float](repeating: 0, count: 2 * 77), p2 = p1, o1 = [Float](repeating: 0, count: 32), o2 = o1
        let all = (0..<Int32(77)).map { $0 }
        all.withUnsafeBufferPointer { idx in
            _ = Attention.decode(q: q, groups: 2, store: st, indices: idx, scale: 0.25, probs: &p1, out: &o1)
        }
        _ = Attention.decode(q: q, groups: 2, store: st, indices: nil, scale: 0.25, probs: &p2, out: &o2)
        XCTAssertEqual(o1, o2); XCTAssertEqual(p1, p2)
    }

    /// The decode kernel agrees with a plain softmax-attention reference (dense and gathered).
    func testDecodeKernelMatchesReference() {
        for (n, d, g) in [(1, 16, 1), (37, 16, 2), (300, 128, 4), (1029, 64, 3)] {
            let st = SelectionFixtures.randomStore(n: n, d: d, seed: UInt64(n))
            let q = SelectionFixtures.random(g * d, seed: UInt64(n + 1))
            let idx: [Int32] = (0..<Int32(n)).filter { $0 % 3 != 1 }
            for indices in [nil, idx] {
                let rows = indices.map { $0.map(Int.init) } ?? Array(0..<n)
                var probs = [Float](repeating: 0, count: g * rows.count), out = [Float](repeating: 0, count: g * d)
                let scale = 1 / Float(d).squareRoot()
                if let indices {
                    indices.withUnsafeBufferPointer { _ = Attention.decode(q: q, groups: g, store: st, indices: $0, scale: scale, probs: &probs, out: &out) }
                } else {
                    _ = Attention.decode(q: q, groups: g, store: st, indices: nil, scale: scale, probs: &probs, out: &out)
                }
                for h in 0..<g {
                    var s = rows.map { j -> Double in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(st.keys[j * d + $1]) } * Double(scale) }
                    let m = s.max()!
                    s = s.map { exp($0 - m) }
                    let z = s.reduce(0, +)
                    for (c, j) in rows.enumerated() {
                        XCTAssertEqual(Double(probs[h * rows.count + c]), s[c] / z, accuracy: 1e-5)
                        _ = j
                    }
                    for t in 0..<d {
                        let ref = zip(rows, s).reduce(0.0) { $0 + $1.1 / z * Double(st.values[$1.0 * d + t]) }
                        XCTAssertEqual(Double(out[h * d + t]), ref, accuracy: 1e-5, "n \(n) d \(d) g \(g) head \(h) dim \(t)")
                    }
                }
            }
        }
    }

    // MARK: Scores

    func testQuestPageBoundsEqualBruteForceAndBoundEveryKey() {
        let d = 16, g = 2, S = 16, n = 100               // the last page is partial (4 tokens)
        let st = SelectionFixtures.randomStore(n: n, d: d, seed: 42)
        let q = SelectionFixtures.random(g * d, seed: 43)
        let pages = (n + S - 1) / S
        let perHead = Quest.pageBounds(store: st, pageSize: S, queries: q, groups: g, perQueryHead: true)
        let summed = Quest.pageBounds(store: st, pageSize: S, queries: q, groups: g, perQueryHead: false)
        XCTAssertEqual(perHead.count, g * pages); XCTAssertEqual(summed.count, pages)
        for p in 0..<pages {
            let tokens = (p * S)..<min((p + 1) * S, n)
            var sumBound: Double = 0
            for h in 0..<g {
                // Independent brute force: max/min per dimension, then sum_i max(q_i M_i, q_i m_i).
                var bound: Double = 0
                for i in 0..<d {
                    let vals = tokens.map { Double(st.keys[$0 * d + i]) }
                    let qi = Double(q[h * d + i])
                    bound += max(qi * vals.max()!, qi * vals.min()!)
                }
                sumBound += bound
                XCTAssertEqual(Double(perHead[h * pages + p]), bound, accuracy: 1e-4, "page \(p) head \(h)")
                for j in tokens {
                    let dot = (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(st.keys[j * d + $1]) }
                    XCTAssertLessThanOrEqual(dot, bound + 1e-5, "q.k of token \(j) exceeds its page bound")
                }
            }
            XCTAssertEqual(Double(summed[p]), sumBound, accuracy: 1e-4, "page \(p) summed over the group")
        }
    }

    func testLokiFullRankScoresEqualExactScores() {
        let d = 32, g = 4, n = 200
        let st = SelectionFixtures.randomStore(n: n, d: d, seed: 7)
        let p = SelectionFixtures.randomBasis(d: d, seed: 8)
        let q = SelectionFixtures.random(g * d, seed: 9)
        // The rotated store: k P (what the cache keeps for Loki), and rotated queries q P.
        let rotated = HeadStore(headDim: d)
        func rot(_ x: UnsafePointer<Float>) -> [Float] { (0..<d).map { j in (0..<d).reduce(Float(0)) { $0 + x[$1] * p[$1 * d + j] } } }
        for t in 0..<n { rotated.append(key: rot(st.keys + t * d), value: Array(UnsafeBufferPointer(start: st.values + t * d, count: d)), position: t) }
        let qr = q.withUnsafeBufferPointer { qb in (0..<g).flatMap { rot(qb.baseAddress! + $0 * d) } }
        let scale = 1 / Float(d).squareRoot()
        let approx = Loki.scores(queries: qr, groups: g, store: rotated, rank: d, indices: nil, perQueryHead: true, scale: scale)
        let summed = Loki.scores(queries: qr, groups: g, store: rotated, rank: d, indices: nil, perQueryHead: false, scale: scale)
        for j in 0..<n {
            var total: Double = 0
            for h in 0..<g {
                let exact = (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * Double(st.keys[j * d + $1]) } * Double(scale)
                total += exact
                XCTAssertEqual(Double(approx[h * n + j]), exact, accuracy: 1e-4)
            }
            XCTAssertEqual(Double(summed[j]), total, accuracy: 1e-4)
        }
        // Rank r: exactly the first r rotated dimensions.
        let r = 5
        let low = Loki.scores(queries: qr, groups: g, store: rotated, rank: r, indices: [3, 10, 150], perQueryHead: true, scale: 1)
        for (c, j) in [3, 10, 150].enumerated() {
            for h in 0..<g {
                let ref = (0..<r).reduce(Float(0)) { $0 + qr[h * d + $1] * rotated.keys[j * d + $1] }
                XCTAssertEqual(low[h * 3 + c], ref, accuracy: 1e-5)
            }
        }
    }

    func testTopKIsExactAndIncreasing() {
        var rng = SeededRandom(seed: 3)
        let special: [Float] = [-.infinity, .infinity, -0.0, 0, -1e-30, 1e-30, .nan, -3.5, 2.25]
        for n in [1, 2, 7, 100, 1000, 5000] {
            // Few distinct values (ties everywhere), negatives, infinities and NaN (ranked lowest).
            let s = (0..<n).map { i -> Float in i % 7 == 3 ? special[Int(rng.next() % 9)] : Float(Int(rng.next() % 13) - 6) * 0.5 }
            for k in [0, 1, n / 3, n - 1, n, n + 2] {
                let got = s.withUnsafeBufferPointer { SelectionKernels.topK($0.baseAddress!, count: n, k: k) }
                // Reference: by value (NaN lowest, below -inf; -0 == 0), ties to the lower index.
                func key(_ i: Int) -> (Int, Float) { s[i].isNaN ? (0, 0) : (1, s[i] == 0 ? 0 : s[i]) }
                let ref = s.indices.sorted { key($0) != key($1) ? key($0) > key($1) : $0 < $1 }.prefix(max(0, min(k, n))).sorted().map { Int32($0) }
                XCTAssertEqual(got, ref, "n \(n) k \(k)")
            }
        }
    }

    /// Both radix-select paths (short lists: 8-bit digits; long: 11-bit) on continuous scores
    /// against a sort, at sizes around the switch (4096) and Quest's page counts.
    func testTopKOnContinuousScoresBothPaths() {
        var rng = SeededRandom(seed: 11)
        for n in [3, 255, 511, 4095, 4096, 4097, 9000] {
            let s = (0..<n).map { _ in rng.nextNormal() * 3 }
            for k in [1, 63, n / 8, n / 2, n - 1] where k >= 1 && k < n {
                let got = s.withUnsafeBufferPointer { SelectionKernels.topK($0.baseAddress!, count: n, k: k) }
                let ref = s.indices.sorted { s[$0] != s[$1] ? s[$0] > s[$1] : $0 < $1 }.prefix(k).sorted().map { Int32($0) }
                XCTAssertEqual(got, ref, "n \(n) k \(k)")
            }
        }
    }

    // MARK: Budgets, subsets, composition

    func testSelectionsAreSubsetsWithinBudget() throws {
        let cal = Self.calibration
        let cases: [(CachePolicy, Int, Bool)] = [
            (try Quest(tokenBudget: 32, pageSize: 8, denseLayers: 0), 32, true),
            (try Quest(tokenBudget: 32, pageSize: 8, denseLayers: 0, gqa: .queryHead), 2 * 24 + 8, true),
            (try Loki(calibration: cal, rank: .fraction(0.25), topK: .tokens(24), gqa: .kvGroup, phases: .decode), 24, true),
            (try Loki(calibration: cal, rank: .dims(4), topK: .tokens(24), gqa: .queryHead, phases: .decode), 2 * 24, true),
            (try OracleTopK(topK: .tokens(20)), 20, true),
            (try OracleTopK(topK: .fraction(0.25), gqa: .queryHead), 2 * 27, true),
        ]
        for (p, bound, _) in cases {
            let check = SelectionCheck(p, bound: bound)
            _ = run(check)
            XCTAssertEqual(check.violations, [], p.name)
            XCTAssertGreaterThan(check.narrowed, 0, "\(p.name) never narrowed the tokens read")
        }
        // Stacked after another selector: choose within its candidates.
        let stacks: [(CachePolicy, CachePolicy, Int)] = [
            (try OracleTopK(topK: .tokens(64)), try Quest(tokenBudget: 32, pageSize: 8, denseLayers: 0), 32),
            (try Quest(tokenBudget: 64, pageSize: 8, denseLayers: 0), try Loki(calibration: cal, topK: .tokens(20), gqa: .kvGroup, phases: .decode), 20),
            (try Loki(calibration: cal, topK: .tokens(60), gqa: .kvGroup, phases: .decode), try OracleTopK(topK: .tokens(10)), 10),
        ]
        for (first, second, bound) in stacks {
            let check = SelectionCheck(second, bound: bound)
            _ = run(try! PolicyStack([first, check]))
            XCTAssertEqual(check.violations, [], "\(first.name) + \(second.name)")
            XCTAssertGreaterThan(check.narrowed, 0, "\(second.name) after \(first.name) never narrowed")
        }
    }

    func testQuestReadsOnlyItsPagesAndMetersMetadata() throws {
        let S = 8, budget = 32
        let quest = try Quest(tokenBudget: budget, pageSize: S, denseLayers: 0)
        let (_, cache) = run(quest)
        let full = run(FullCachePolicy()).1
        let d = 16, hkv = 2, L = 2
        // Per step: the top P-1 pages + the last page of K and V, and every page summary (2d floats).
        var expectedKV = 0, expectedMeta = 0
        for s in 0..<Self.decodeTokens.count {
            let T = Self.prompt.count + s + 1
            let pages = (T + S - 1) / S
            let lastTokens = T - (pages - 1) * S
            expectedKV += L * hkv * ((budget / S - 1) * S + lastTokens) * d * 4 * 2
            expectedMeta += L * hkv * (pages - 1) * 2 * d * 4
        }
        XCTAssertEqual(cache.stats.decodeKeyBytesRead + cache.stats.decodeValueBytesRead, expectedKV)
        XCTAssertEqual(cache.stats.decodeMetadataBytesRead, expectedMeta)
        XCTAssertLessThan(cache.stats.decodeBytesRead, full.stats.decodeBytesRead / 2)
        XCTAssertEqual(cache.stats.bytesStored, full.stats.bytesStored, "selection stores everything")
        XCTAssertEqual(quest.metadataBytes, L * hkv * ((context + S - 1) / S) * 2 * d * 4)
    }

    /// A phase clock times every decode layer step (choose and attend) and changes no number.
    func testPhaseClockTimesDecodeStepsWithoutChangingResults() throws {
        let plain = run(try Quest(tokenBudget: 32, pageSize: 8, denseLayers: 0))
        let m = Self.model, clock = DecodePhaseClock()
        let cache = m.makeCache(policy: try Quest(tokenBudget: 32, pageSize: 8, denseLayers: 0))
        cache.phaseClock = clock
        var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        XCTAssertEqual(clock.layerSteps, 0, "prefill is not a decode step")
        for (i, t) in Self.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
        }
        XCTAssertEqual(logits, plain.0)
        XCTAssertEqual(cache.stats, plain.1.stats)
        XCTAssertEqual(clock.layerSteps, Self.decodeTokens.count * cache.modelShape.layers)
        XCTAssertGreaterThan(clock.chooseSeconds, 0)
        XCTAssertGreaterThan(clock.attendSeconds, 0)
        clock.reset()
        XCTAssertEqual(clock.layerSteps, 0); XCTAssertEqual(clock.chooseSeconds, 0); XCTAssertEqual(clock.attendSeconds, 0)
    }

    func testLokiMetersLowRankKeyReads() throws {
        let loki = try Loki(calibration: Self.calibration, rank: .dims(4), topK: .tokens(16), gqa: .kvGroup, phases: .decode)
        let (_, cache) = run(loki)
        var keys = 0, values = 0
        for s in 0..<Self.decodeTokens.count {
            let T = Self.prompt.count + s + 1
            keys += 2 * 2 * (T * 4 + 16 * 16) * 4          // layers x heads x (r dims of T keys + k full keys)
            values += 2 * 2 * 16 * 16 * 4
        }
        XCTAssertEqual(cache.stats.decodeKeyBytesRead, keys)
        XCTAssertEqual(cache.stats.decodeValueBytesRead, values)
    }
}
