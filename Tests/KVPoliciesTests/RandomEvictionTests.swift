import XCTest
import KVCacheCore
@testable import KVPolicies
import KVTestSupport

/// Random eviction (kvpress's RandomPress): a uniformly random subset of the budget's size per
/// layer and KV head, reproducible for a seed. The registry's contract tests cover the rest.
final class RandomEvictionTests: XCTestCase {
    /// Over seeds, every position is kept with probability capacity / T (within 5 standard
    /// deviations of the binomial count), and the scores' mean is 1/2.
    func testKeepsAUniformlyRandomSubset() {
        let T = 96, keep = 24, seeds = 400
        var kept = [Int](repeating: 0, count: T), sum = 0.0
        for seed in 0..<seeds {
            let s = (0..<T).map { RandomEviction.uniform(seed: seed, layer: 1, head: 0, position: $0) }
            XCTAssertTrue(s.allSatisfy { $0 >= 0 && $0 < 1 })
            sum += s.reduce(0.0) { $0 + Double($1) }
            for i in RandomEviction.topIndices(s, keep: keep) { kept[i] += 1 }
        }
        let p = Double(keep) / Double(T), expected = Double(seeds) * p, sd = (Double(seeds) * p * (1 - p)).squareRoot()
        for (i, k) in kept.enumerated() {
            XCTAssertLessThan(abs(Double(k) - expected), 5 * sd, "position \(i) kept \(k) times of \(seeds), expected \(expected)")
        }
        XCTAssertEqual(sum / Double(seeds * T), 0.5, accuracy: 0.01)
    }

    /// The budget per head, different tokens per layer, head and seed, the same for the same seed.
    func testBudgetSeedsAndHeads() throws {
        func kept(_ seed: Int) throws -> [[[Int]]] {       // positions held after the prefill, per layer and KV head
            var held: [[[Int]]] = []
            _ = PolicyHarness.run(try RandomEviction(RandomEviction.Config(budget: .tokens(24), seed: seed))) { c, steps in
                if steps == 0 { held = c.stores.map { $0.map { s in (0..<s.count).map { s.position($0) }.sorted() } } }
            }
            return held
        }
        let a = try kept(3), b = try kept(3), c = try kept(4)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        XCTAssertTrue(a.allSatisfy { $0.allSatisfy { $0.count == 24 } })
        XCTAssertNotEqual(a[0][0], a[0][1], "heads draw their own subsets")
        XCTAssertNotEqual(a[0][0], a[1][0], "layers draw their own subsets")
        XCTAssertThrowsError(try RandomEviction(RandomEviction.Config(budget: .tokens(24), seed: -1)))
    }
}
