import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTestSupport

/// duo_attention: the head pattern follows the score file (a KV head's score is its group's best),
/// a streaming head's store really holds sinks + recent rows (the first positions and the newest)
/// after the prefill and after every decode step while a retrieval head's holds every token, the
/// bytes reported are the stores', and a score file for another model is refused naming the file.
final class DuoAttentionTests: XCTestCase {
    typealias H = PolicyHarness
    static let dir: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("duo-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    /// Scores where query head q of layer l scores l * 10 + q, except that one query head of
    /// (layer 0, KV head 0) scores highest of all: that KV head must be a retrieval head.
    func scoreFile(layers: Int, heads: Int) throws -> String {
        var m = (0..<(layers * heads)).map { Float(($0 / heads) * 10 + $0 % heads) }
        m[1] = 1000
        let path = Self.dir + "/scores-\(layers)x\(heads).h5"
        try HeadScoreFile(layers: layers, queryHeads: heads, maps: ["retrieval_score": m]).save(to: path)
        return path
    }

    func testStreamingHeadsHoldSinksAndRecentRowsOnly() throws {
        let c = H.model.config, shape = H.model.cacheShape
        let path = try scoreFile(layers: c.layers, heads: c.heads)
        let spec = PolicySpec(DuoAttention.Config(scores: path, sparsity: 0.5, sinks: 4, recent: 20))
        let policy = try XCTUnwrap(try spec.make(model: shape) as? DuoAttention)
        policy.bind(shape: shape)
        // Expected pattern, by brute force: KV-head score = max over its query heads; top half full.
        let g = c.heads / c.kvHeads
        let scores = (0..<(c.layers * c.kvHeads)).map { i in
            (0..<g).map { policy.file.maps["retrieval_score"]![(i / c.kvHeads) * c.heads + (i % c.kvHeads) * g + $0] }.max()!
        }
        let ranked = scores.indices.sorted { scores[$0] > scores[$1] }
        let fullSet = Set(ranked.prefix(scores.count - scores.count / 2))
        XCTAssertTrue(fullSet.contains(0), "layer 0, KV head 0 holds the best query head")
        for i in scores.indices { XCTAssertEqual(policy.full[i / c.kvHeads][i % c.kvHeads], fullSet.contains(i), "KV head \(i)") }

        var fullBytes = 0
        _ = H.run(FullCachePolicy()) { cache, _ in fullBytes = cache.stats.bytesStored }
        var checked = 0, lastBytes = 0
        _ = H.run(try spec.make()) { cache, steps in
            let seen = H.prompt.count + steps
            XCTAssertEqual(H.storeProblems(cache), [], "after \(steps) decode steps")
            var payload = 0
            for (l, layer) in cache.stores.enumerated() { for (h, st) in layer.enumerated() {
                let held = Set((0..<st.count).map { st.position($0) })
                let expected = fullSet.contains(l * c.kvHeads + h) ? Set(0..<seen) : Set(0..<4).union((seen - 20)..<seen)
                XCTAssertEqual(held, expected, "layer \(l) KV head \(h) after \(steps) decode steps")
                XCTAssertEqual(st.count, held.count)
                payload += st.count * c.headDim * 2 * MemoryLayout<Float>.size
            } }
            XCTAssertEqual(cache.stats.bytesStored, payload)
            lastBytes = cache.stats.bytesStored
            checked += 1
        }
        XCTAssertEqual(checked, H.decodeTokens.count + 1)
        // Half the KV heads at 24 of 104 tokens: 1/2 + 1/2 x 24/104 of the full cache.
        XCTAssertEqual(Double(lastBytes) / Double(fullBytes), 0.5 + 0.5 * 24 / Double(H.context), accuracy: 1e-9)
    }

    func testBadScoreFilesAreRefusedNamingTheFile() throws {
        let c = H.model.config
        let other = try scoreFile(layers: c.layers + 1, heads: c.heads)
        XCTAssertThrowsError(try PolicySpec(DuoAttention.Config(scores: other)).make(model: H.model.cacheShape)) {
            XCTAssertTrue("\($0)".contains(other) && "\($0)".contains("layers"), "\($0)")
        }
        let path = try scoreFile(layers: c.layers, heads: c.heads)
        XCTAssertThrowsError(try PolicySpec(DuoAttention.Config(scores: path, score: "nope")).make()) {
            XCTAssertTrue("\($0)".contains("nope"), "\($0)")
        }
        XCTAssertThrowsError(try PolicySpec(DuoAttention.Config(scores: Self.dir + "/missing.h5")).make()) {
            XCTAssertTrue("\($0)".contains("missing.h5"), "\($0)")
        }
        XCTAssertThrowsError(try PolicySpec(DuoAttention.Config(scores: path, sparsity: 1.5)).make()) {
            XCTAssertTrue("\($0)".contains("sparsity"), "\($0)")
        }
    }
}
