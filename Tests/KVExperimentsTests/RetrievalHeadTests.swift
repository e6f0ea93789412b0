import XCTest
@testable import KVExperiments
import KVHDF5
import KVModel
import KVPolicies
import KVTensor

/// Retrieval scores against the reference's algorithm re-implemented on transformers
/// (scripts/fixtures/make_retrieval_head_fixture.py), the second-moment long-context estimate
/// against a brute-force matrix computation, and the score file round trip.
final class RetrievalHeadTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Fixture: Decodable {
        struct Case: Decodable {
            let key: Int
            let input_ids: [Int], answer_ids: [Int], span: [Int], generated: [Int]
            let scores: [[Double]]
        }
        let new_tokens: Int
        let cases: [Case]
    }

    func testScoresMatchTheReferenceAlgorithm() throws {
        let data = try Data(contentsOf: Self.root.appendingPathComponent("Tests/KVModelTests/Fixtures/retrieval/retrieval_heads.json"))
        let fx = try JSONDecoder().decode(Fixture.self, from: data)
        let model = try LlamaModel(checkpoint: Self.root.appendingPathComponent("models/kvlab-retrieval").path)
        let H = model.config.heads
        var partial = 0
        for c in fx.cases {
            let span = try XCTUnwrap(RetrievalHeadDetector.findSpan(c.answer_ids, in: c.input_ids))
            XCTAssertEqual([span.lowerBound, span.upperBound], c.span, "key \(c.key)")
            let rec = HeadScoreRecorder(longContext: .init())
            let r = RetrievalHeadDetector.score(model: model, prompt: c.input_ids, span: span, maxNewTokens: fx.new_tokens,
                                                eos: [], stop: { _ in false }, recorder: rec)
            XCTAssertEqual(r.generated, c.generated, "key \(c.key)")
            for l in 0..<model.config.layers { for h in 0..<H {
                XCTAssertEqual(Double(r.scores[l * H + h]), c.scores[l][h], accuracy: 1e-6, "key \(c.key) head \(l).\(h)")
            } }
            partial += c.scores.joined().contains { $0 > 0 && $0 < 1 } ? 1 : 0
        }
        XCTAssertGreaterThan(partial, 0, "the fixture should exercise partial copies")
    }

    func testFindSpanAndRecallFollowTheReference() {
        XCTAssertEqual(RetrievalHeadDetector.findSpan([5, 6, 7], in: [1, 2, 5, 6, 7, 5, 6, 7]), 2..<5)
        // 10 distinct tokens, one differing (the reference's > 0.9 overlap is not met by 9/10).
        let answer = Array(10..<20)
        XCTAssertNil(RetrievalHeadDetector.findSpan(answer, in: [1] + Array(10..<19) + [99]))
        XCTAssertEqual(RetrievalHeadDetector.findSpan([3, 4], in: [9, 4, 3, 1]), 1..<3)   // sets, not sequences
        XCTAssertEqual(RetrievalHeadDetector.rouge1Recall(reference: "eat a sandwich", candidate: "They eat a big sandwich."), 1)
        XCTAssertEqual(RetrievalHeadDetector.rouge1Recall(reference: "eat a sandwich now", candidate: "a sandwich"), 0.5)
    }

    /// f_hat from the mean and variance of the scores equals the Gaussian formula written with the
    /// keys' mean vector and covariance matrix; the oracle is the exact bulk mass.
    func testSecondMomentEstimateAgainstBruteForce() {
        var rng = SeededRandom(seed: 4)
        let n = 150, d = 16
        let keys = (0..<(n * d)).map { _ in rng.nextNormal() }
        let q = (0..<d).map { _ in rng.nextNormal() * 0.8 }
        let scale = 1 / Float(d).squareRoot()
        let s = (0..<n).map { i in Double((0..<d).reduce(Float(0)) { $0 + q[$1] * keys[i * d + $1] } * scale) }
        let m = s.max()!
        var p = s.map { exp($0 - m) }
        let z = p.reduce(0, +)
        p = p.map { $0 / z }
        let o = LongContextStats.Options(sinks: 4, window: 32, threshold: 0.5)
        let f = q.withUnsafeBufferPointer { qb in keys.withUnsafeBufferPointer { kb in p.map(Float.init).withUnsafeBufferPointer { pb in
            LongContextStats.fractions(query: qb.baseAddress!, keys: kb.baseAddress!, count: n, headDim: d, scale: scale,
                                       probs: pb.baseAddress!, options: o)
        } } }!
        let local = Array(0..<4) + Array((n - 32)..<n), bulk = Array(4..<(n - 32))
        XCTAssertEqual(f.oracle, bulk.reduce(0) { $0 + p[$1] }, accuracy: 1e-5)
        func gaussian(_ set: [Int]) -> Double {
            var mu = [Double](repeating: 0, count: d)
            for i in set { for j in 0..<d { mu[j] += Double(keys[i * d + j]) / Double(set.count) } }
            var sigma = [Double](repeating: 0, count: d * d)
            for i in set { for a in 0..<d { for b in 0..<d {
                sigma[a * d + b] += (Double(keys[i * d + a]) - mu[a]) * (Double(keys[i * d + b]) - mu[b]) / Double(set.count)
            } } }
            let qd = q.map(Double.init), dd = Double(d)
            let qmu = (0..<d).reduce(0.0) { $0 + qd[$1] * mu[$1] }
            var qsq = 0.0
            for a in 0..<d { for b in 0..<d { qsq += qd[a] * sigma[a * d + b] * qd[b] } }
            let bulkSum = Double(bulk.count) * exp(qmu / dd.squareRoot() + qsq / (2 * dd))
            let localSum = local.reduce(0.0) { $0 + exp(s[$1]) }
            return bulkSum / (bulkSum + localSum)
        }
        XCTAssertEqual(f.local, gaussian(local), accuracy: 1e-4)
        XCTAssertEqual(f.bulk, gaussian(bulk), accuracy: 1e-4)
        // No bulk (n <= sinks + window): nothing to estimate.
        XCTAssertNil(LongContextStats.fractions(query: q, keys: keys, count: 30, headDim: d, scale: scale, probs: p.map(Float.init), options: o))
    }

    func testDetectionOnTheRetrievalModelFindsItsCopyHeadAndRoundTrips() throws {
        let path = Self.root.appendingPathComponent("models/kvlab-retrieval").path
        let model = try LlamaModel(checkpoint: path)
        let (codec, style) = try XCTUnwrap(try ModelText.textSetup(for: path))
        var o = HeadDetectionOptions()
        o.contexts = [200]; o.depths = 2; o.maxNewTokens = 6
        let r = try RetrievalHeadDetector.detect(model: model, codec: codec, style: style, options: o)
        XCTAssertEqual(r.prompts.count, 2)
        XCTAssertTrue(r.prompts.allSatisfy(\.used))
        let H = model.config.heads
        XCTAssertEqual(r.retrieval[2 * H + 0], 1, accuracy: 1e-6)         // the constructed copy head (layer 2, head 0)
        XCTAssertEqual(r.fraction(above: 0.1), 1 / Double(r.retrieval.count))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("heads-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try r.save(to: dir + "/h.h5")
        let f = try HeadScoreFile.load(dir + "/h.h5")
        XCTAssertEqual(f.maps["retrieval_score"], r.retrieval)
        XCTAssertEqual(f.maps["lc_bulk_mass"]?.count, r.retrieval.count)
        let top = try f.ranked().first!
        XCTAssertEqual([top.layer, top.head], [2, 0])
        XCTAssertThrowsError(try f.ranked(by: "nope")) { XCTAssertTrue("\($0)".contains("nope")) }
        XCTAssertThrowsError(try HeadScoreFile.load(dir + "/missing.h5")) { XCTAssertTrue("\($0)".contains("missing.h5")) }
        try "not hdf5".write(toFile: dir + "/text.h5", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try HeadScoreFile.load(dir + "/text.h5")) { XCTAssertTrue("\($0)".contains("not an HDF5 file"), "\($0)") }
        try H5File.writeAtomically(to: dir + "/other.h5") { try $0.root.setAttribute("format", "something-else") }
        XCTAssertThrowsError(try HeadScoreFile.load(dir + "/other.h5")) { XCTAssertTrue("\($0)".contains("not a head-score file"), "\($0)") }
    }
}
