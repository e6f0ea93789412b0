import Foundation
import XCTest
import KVCacheCore
import KVModel
import KVPolicies

/// StreamingLLM's position shift: stored keys re-rotated to cache-relative positions.
final class PositionShiftTests: XCTestCase {
    static let prompt = (0..<96).map { ($0 * 37 + 11) % 256 }
    static let decodeTokens = [5, 77, 130, 9, 200, 31, 64, 18]

    func run(_ m: LlamaModel, _ policy: CachePolicy, decode: [Int] = PositionShiftTests.decodeTokens) -> ([Float], KVCache) {
        let cache = m.makeCache(policy: policy)
        var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        for (i, t) in decode.enumerated() {
            logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
        }
        return (logits, cache)
    }

    func testNoEvictionIsTheFullCache() throws {
        let m = try ModelSource.parse("synthetic:tiny,std=0.15,seed=3").load()
        let (full, _) = run(m, FullCachePolicy())
        let (shifted, _) = run(m, try StreamingLLM(budget: .tokens(512), sinks: 4, positionShift: true))
        XCTAssertEqual(shifted, full, "without evictions nothing is re-rotated")
    }

    /// Layer 0's keys depend only on the token, so the full cache's layer-0 keys rotated by the
    /// expected shift (computed here in Double from the model's frequencies) must be what the
    /// shifted store holds: the sinks moved forward by the number of evicted tokens, the window not.
    func testStoredKeysSitAtCacheRelativePositions() throws {
        let m = try ModelSource.parse("synthetic:tiny,std=0.15,seed=3").load()
        let (_, full) = run(m, FullCachePolicy())
        let (_, shifted) = run(m, try StreamingLLM(budget: .tokens(40), sinks: 4, positionShift: true))
        let d = m.cacheShape.headDim, half = d / 2, inv = m.rope.invFreq
        let seen = Self.prompt.count + Self.decodeTokens.count
        for h in 0..<m.cacheShape.kvHeads {
            let st = shifted.stores[0][h]
            XCTAssertEqual(st.count, 40)
            let evicted = seen - st.count
            for i in 0..<st.count {
                let p = st.position(i)
                let delta = p < 4 ? evicted : 0                     // sinks move up to just before the window
                let x = (0..<d).map { Double(full.stores[0][h].keys[p * d + $0]) }
                for j in 0..<half {
                    let a = Double(delta) * Double(inv[j])
                    let e0 = x[j] * cos(a) - x[j + half] * sin(a), e1 = x[j + half] * cos(a) + x[j] * sin(a)
                    XCTAssertEqual(Double(st.keys[i * d + j]), e0, accuracy: 1e-4, "head \(h) position \(p) dim \(j)")
                    XCTAssertEqual(Double(st.keys[i * d + j + half]), e1, accuracy: 1e-4)
                }
            }
        }
    }

    /// On a one-layer model a token's K/V depend only on the token, so StreamingLLM with the
    /// position shift must give the logits of the full model run afresh on the kept tokens at
    /// contiguous positions 0, 1, 2, ... (the reference's semantics); without the shift it does not.
    func testOneLayerModelEqualsFreshRunOnKeptTokens() throws {
        let m = try ModelSource.parse("synthetic:tiny,layers=1,std=0.15,seed=7").load()
        let tokens = Self.prompt + Self.decodeTokens
        for shift in [true, false] {
            let policy = try StreamingLLM(budget: .tokens(40), sinks: 4, positionShift: shift)
            let (_, cache) = run(m, policy, decode: Array(Self.decodeTokens.dropLast()))
            let st = cache.stores[0][0]
            let kept = (0..<st.count).map(st.position).sorted()
            let last = m.forward([Self.decodeTokens.last!], startPosition: tokens.count - 1, cache: cache, phase: .decode)
            let fresh = m.forward(kept.map { tokens[$0] } + [Self.decodeTokens.last!], startPosition: 0,
                                  cache: m.makeCache(), phase: .prefill)
            let scale = fresh.map { abs($0) }.max()!
            let err = zip(last, fresh).map { abs($0 - $1) }.max()! / scale
            if shift {
                XCTAssertLessThan(err, 1e-4, "position shift must equal the contiguous re-run")
            } else {
                XCTAssertGreaterThan(err, 1e-3, "without the shift the sinks sit at their old distance")
            }
        }
    }

    func testConfigAndStacks() throws {
        XCTAssertEqual(PolicySpec(StreamingLLM.Config(budget: .tokens(64), sinks: 4, schedule: .always)).parameters.map(\.0),
                       ["budget", "sinks", "schedule"], "the default keeps its run key")
        let on = PolicySpec(StreamingLLM.Config(budget: .tokens(64), sinks: 4, schedule: .always, positionShift: true))
        XCTAssertTrue(on.parameters.contains { $0 == ("position_shift", "true") })
        XCTAssertTrue(try on.make().layout.positionShift)
        XCTAssertThrowsError(try PolicySpec.stack([on, .quest(budget: 64, pageSize: 16, denseLayers: 0, gqa: .kvGroup)]).make())
        XCTAssertThrowsError(try PolicySpec.stack([on, PolicySpec(KIVI.Config(bits: 2, groupSize: 32, residual: 128))]).make())
        XCTAssertNoThrow(try PolicySpec.stack([on, PolicySpec(H2O.Config(budget: .tokens(64), recentFraction: 0.5, scoring: .causal, schedule: .always))]).make())
    }
}
