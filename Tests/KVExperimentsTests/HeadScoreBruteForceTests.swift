import XCTest
@testable import KVExperiments
import KVCacheCore
import KVModel

/// Retrieval and long-context scores of `kvlab calibrate heads` against a brute-force computation
/// that shares nothing with the recorder but the model's queries and keys: every decode step's
/// post-RoPE queries and full-cache keys are copied out, attention is recomputed in Double (scores,
/// softmax, first argmax), the paper's copy rule is applied to the generated tokens, and the
/// long-context estimate is written with the explicit mean vector and covariance matrix of the keys
/// (the paper's Gaussian formula), not the score moments the recorder uses.
final class HeadScoreBruteForceTests: XCTestCase {
    /// Copies each decode step's queries [H*d] and every KV head's keys [n, d], per layer.
    final class DecodeCapture: CachePolicy {
        var name: String { "decode_capture" }
        /// [step][layer]: (queries [H*d], keys per KV head [n*d]).
        var steps: [[(q: [Float], keys: [[Float]])]] = []
        func didAppend(_ step: LayerStep) {
            guard step.phase == .decode else { return }
            let d = step.shape.headDim, hq = step.shape.queryHeads
            if step.layer == 0 { steps.append([]) }
            let keys = step.stores.map { st in (0..<(st.count * d)).map { st.keys[$0] } }
            XCTAssertTrue(step.stores.allSatisfy { st in (0..<st.count).allSatisfy { st.position($0) == $0 } })
            steps[steps.count - 1].append((Array(UnsafeBufferPointer(start: step.queries, count: hq * d)), keys))
        }
    }

    func testScoresEqualABruteForceRecomputation() throws {
        let root = RetrievalHeadTests.root
        let data = try Data(contentsOf: root.appendingPathComponent("Tests/KVModelTests/Fixtures/retrieval/retrieval_heads.json"))
        let fx = try JSONDecoder().decode(RetrievalHeadTests.Fixture.self, from: data)
        let model = try LlamaModel(checkpoint: root.appendingPathComponent("models/kvlab-retrieval").path)
        let c = model.config, L = c.layers, H = c.heads, d = c.headDim, g = H / c.kvHeads
        let o = LongContextStats.Options(sinks: 4, window: 24, threshold: 0.3)
        let rec = HeadScoreRecorder(longContext: o)
        var totalHits = 0.0, measured = 0
        // Brute-force sums over every query of every case, [L * H].
        var mass = [Double](repeating: 0, count: L * H), local = mass, bulk = mass, longOracle = mass, count = mass
        for cs in fx.cases.prefix(1) {
            let span = cs.span[0]..<cs.span[1]
            let cap = DecodeCapture()
            let r = RetrievalHeadDetector.score(model: model, prompt: cs.input_ids, span: span, maxNewTokens: fx.new_tokens,
                                                eos: [], stop: { _ in false }, recorder: rec, observer: cap)
            XCTAssertEqual(cap.steps.count, r.generated.count)
            var hits = [Double](repeating: 0, count: L * H)
            for (t, layers) in cap.steps.enumerated() {
                XCTAssertEqual(layers.count, L)
                for (l, step) in layers.enumerated() {
                    // Mean vector and covariance matrix (1/n) of a key set, once per KV head and set.
                    var memo: [String: ([Double], [Double])] = [:]
                    func moments(_ keys: [Float], _ set: [Int], kvHead: Int, d: Int) -> ([Double], [Double]) {
                        let id = "\(kvHead):\(set.first!):\(set.count)"
                        if let m = memo[id] { return m }
                        var mu = [Double](repeating: 0, count: d), sigma = [Double](repeating: 0, count: d * d)
                        for i in set { for a in 0..<d { mu[a] += Double(keys[i * d + a]) / Double(set.count) } }
                        for i in set { for a in 0..<d {
                            let xa = Double(keys[i * d + a]) - mu[a]
                            for b in 0..<d { sigma[a * d + b] += xa * (Double(keys[i * d + b]) - mu[b]) / Double(set.count) }
                        } }
                        memo[id] = (mu, sigma)
                        return (mu, sigma)
                    }
                    for qh in 0..<H {
                        let keys = step.keys[qh / g], n = keys.count / d
                        let q = Array(step.q[(qh * d)..<((qh + 1) * d)]).map(Double.init)
                        let s = (0..<n).map { i in (0..<d).reduce(0.0) { $0 + q[$1] * Double(keys[i * d + $1]) } / Double(d).squareRoot() }
                        let m = s.max()!
                        let z = s.reduce(0.0) { $0 + exp($1 - m) }
                        let p = s.map { exp($0 - m) / z }
                        let top = p.firstIndex(of: p.max()!)!
                        if span.contains(top) && cs.input_ids[top] == r.generated[t] { hits[l * H + qh] += 1 / Double(span.count) }
                        // Long-context: local = sinks + window, bulk = the rest.
                        let lo = Array(0..<o.sinks) + Array((n - o.window)..<n), bu = Array(o.sinks..<(n - o.window))
                        guard !bu.isEmpty else { continue }
                        func gaussian(_ set: [Int]) -> Double {
                            let (mu, sigma) = moments(keys, set, kvHead: qh / g, d: d)
                            let qmu = (0..<d).reduce(0.0) { $0 + q[$1] * mu[$1] }
                            var qsq = 0.0
                            for a in 0..<d { for b in 0..<d { qsq += q[a] * sigma[a * d + b] * q[b] } }
                            let logBulk = log(Double(bu.count)) + qmu / Double(d).squareRoot() + qsq / (2 * Double(d))
                            let logLocal = m + log(lo.reduce(0.0) { $0 + exp(s[$1] - m) })
                            return 1 / (1 + exp(logLocal - logBulk))
                        }
                        let i = l * H + qh, f = bu.reduce(0.0) { $0 + p[$1] }
                        mass[i] += f; local[i] += gaussian(lo); bulk[i] += gaussian(bu)
                        longOracle[i] += f >= o.threshold ? 1 : 0; count[i] += 1
                        measured += 1
                    }
                }
            }
            for i in 0..<(L * H) { XCTAssertEqual(Double(r.scores[i]), hits[i], accuracy: 1e-5, "retrieval score, head \(i / H).\(i % H)") }
            totalHits += hits.reduce(0, +)
        }
        XCTAssertGreaterThan(totalHits, 0, "the cases must exercise copies")
        XCTAssertGreaterThan(measured, 0)
        let st = try XCTUnwrap(rec.stats)
        let maps: [(String, [Float], [Double])] = [("bulk mass", st.mean(st.bulkMass), mass), ("QAdA local", st.mean(st.qadaLocal), local),
                                                   ("QAdA bulk", st.mean(st.qadaBulk), bulk), ("long (oracle)", st.mean(st.longOracle), longOracle)]
        for (name, got, sums) in maps {
            for i in 0..<(L * H) {
                XCTAssertEqual(st.queries[i], Int(count[i]), "queries measured, head \(i)")
                XCTAssertEqual(Double(got[i]), sums[i] / count[i], accuracy: 1e-4, "\(name), head \(i / H).\(i % H)")
            }
        }
        // The estimates are not trivially equal to the oracle (the test compares different things).
        XCTAssertGreaterThan(zip(st.mean(st.qadaBulk), st.mean(st.bulkMass)).map { abs(Double($0) - Double($1)) }.max()!, 1e-3)
    }
}
