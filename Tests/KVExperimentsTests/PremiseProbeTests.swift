import Foundation
import XCTest
import KVCacheCore
import KVModel
import KVPolicies
@testable import KVExperiments

final class PremiseProbeTests: XCTestCase {
    func model() throws -> LlamaModel {
        try ModelSource.parse("synthetic:tiny,layers=3,std=0.3,seed=5").load()
    }
    func ids(_ n: Int, seed: UInt64) -> [Int] {
        var s = seed
        return (0..<n).map { _ in s = s &* 6364136223846793005 &+ 1442695040888963407; return Int(s >> 33) % 256 }
    }

    /// Prefills all tokens but the last under `policy`, then decodes the last one with a recording probe.
    func decodeLast(_ m: LlamaModel, _ tokens: [Int], policy: CachePolicy, keepProbabilities: Bool) -> RecordingProbe {
        let cache = m.makeCache(policy: policy)
        let probe = RecordingProbe(shape: cache.shape, keepProbabilities: keepProbabilities)
        cache.probe = probe
        _ = m.forward(Array(tokens.dropLast()), startPosition: 0, cache: cache, phase: .prefill)
        probe.begin()
        _ = m.forward([tokens.last!], startPosition: tokens.count - 1, cache: cache, phase: .decode)
        probe.end()
        return probe
    }

    /// The top-fraction mass of the last prompt row equals the one computed from the decode kernel's
    /// probabilities when that row is fed as a decode step instead (a different code path).
    func testTopMassMatchesDecodeProbabilities() throws {
        let m = try model()
        let tokens = ids(96, seed: 1)
        let r = try PremiseProbe.run(model: m, tokens: tokens, sequenceLength: 96, window: 1)
        let probe = decodeLast(m, tokens, policy: FullCachePolicy(), keepProbabilities: true)
        let F = PremiseProbe.fractions
        for l in 0..<r.layers { for qh in 0..<r.queryHeads {
            let p = probe.probabilities[0][l][qh].sorted(by: >)
            XCTAssertEqual(p.count, 96)
            for (fi, f) in F.enumerated() {
                let k = Int((f * 96).rounded(.up))
                let expected = p.prefix(k).reduce(0, +)
                XCTAssertEqual(r.topMass[(l * r.queryHeads + qh) * F.count + fi], expected, accuracy: 2e-5, "layer \(l) head \(qh) f \(f)")
            }
        } }
        // Mass is monotone in the fraction and at most 1.
        for i in stride(from: 0, to: r.topMass.count, by: F.count) {
            let row = Array(r.topMass[i..<(i + F.count)])
            XCTAssertEqual(row, row.sorted())
            XCTAssertLessThanOrEqual(row.last!, 1.0001)
        }
    }

    /// Adjacent-layer cosines equal a direct computation on the full cache's stores, averaged over
    /// the sequences; key ranks equal Loki's calibration on the same tokens.
    func testLayerCosineAndKeyRankMatchIndependentComputations() throws {
        let m = try model()
        let tokens = ids(2 * 80, seed: 2)
        let r = try PremiseProbe.run(model: m, tokens: tokens, sequenceLength: 80, window: 8)
        XCTAssertEqual(r.sequences, 2)
        let d = m.config.headDim, hkv = m.config.kvHeads
        var expectK = [Double](repeating: 0, count: (m.config.layers - 1) * hkv), expectV = expectK
        for s in 0..<2 {
            let cache = m.makeCache()
            _ = m.forward(Array(tokens[s * 80..<(s + 1) * 80]), startPosition: 0, cache: cache, phase: .prefill)
            for l in 0..<(m.config.layers - 1) { for h in 0..<hkv {
                let a = cache.stores[l][h], b = cache.stores[l + 1][h]
                var ck = 0.0, cv = 0.0
                for t in 0..<80 {
                    func cos(_ x: UnsafeMutablePointer<Float>, _ y: UnsafeMutablePointer<Float>) -> Double {
                        var xy: Float = 0, xx: Float = 0, yy: Float = 0
                        for i in 0..<d { xy += x[t * d + i] * y[t * d + i]; xx += x[t * d + i] * x[t * d + i]; yy += y[t * d + i] * y[t * d + i] }
                        return Double(xy / (xx * yy).squareRoot())
                    }
                    ck += cos(a.keys, b.keys); cv += cos(a.values, b.values)
                }
                expectK[l * hkv + h] += ck / 80 / 2; expectV[l * hkv + h] += cv / 80 / 2
            } }
        }
        for i in expectK.indices {
            XCTAssertEqual(Double(r.layerCosK[i]), expectK[i], accuracy: 1e-4)
            XCTAssertEqual(Double(r.layerCosV[i]), expectV[i], accuracy: 1e-4)
        }
        let cal = try LokiCalibrator.calibrate(model: m, source: .tokens(tokens, label: "t"), sequenceLength: 80, modelLabel: "m")
        for l in 0..<m.config.layers { for h in 0..<hkv {
            XCTAssertEqual(Int(r.keyRank90[l * hkv + h]), cal.rankReaching(0.9, layer: l, head: h))
        } }
    }

    /// Quest's page mass equals the full attention's mass on the pages the Quest policy itself
    /// attends when the last prompt row is decoded instead (its own selection code), and
    /// token top-k >= page oracle >= Quest at every budget.
    func testQuestPageMassMatchesTheQuestPolicy() throws {
        let m = try model()
        let tokens = ids(96, seed: 4), S = 8
        let r = try PremiseProbe.run(model: m, tokens: tokens, sequenceLength: 96, window: 1, pageSize: S)
        XCTAssertEqual(r.pageSize, S)
        let full = decodeLast(m, tokens, policy: FullCachePolicy(), keepProbabilities: true)
        let F = PremiseProbe.fractions, g = r.queryHeads / r.kvHeads
        var compared = 0
        for (fi, f) in F.enumerated() {
            let budget = Int((f * 96).rounded(.up))
            guard budget >= S else {                                  // Quest needs a page of budget
                XCTAssertTrue((0..<(r.layers * r.queryHeads)).allSatisfy { r.questMass[$0 * F.count + fi].isNaN })
                continue
            }
            for l in 0..<r.layers {
                // Layers below l dense, so layer l's decode query is the prefill's last row.
                let quest = decodeLast(m, tokens, policy: try Quest(tokenBudget: budget, pageSize: S, denseLayers: l), keepProbabilities: false)
                for qh in 0..<r.queryHeads {
                    let chosen = quest.attended[0][l][qh / g]
                    XCTAssertLessThan(chosen.count, 96, "Quest narrowed the read at budget \(budget)")
                    let expected = chosen.reduce(Float(0)) { $0 + full.probabilities[0][l][qh][Int($1)] }
                    let i = (l * r.queryHeads + qh) * F.count + fi
                    XCTAssertEqual(r.questMass[i], expected, accuracy: 2e-5, "layer \(l) head \(qh) budget \(budget)")
                    compared += 1
                }
            }
        }
        XCTAssertEqual(compared, 3 * r.layers * r.queryHeads)      // budgets 12, 24, 48 of 96
        for i in r.topMass.indices where !r.questMass[i].isNaN {
            XCTAssertGreaterThanOrEqual(r.topMass[i] + 1e-5, r.pageOracleMass[i])
            XCTAssertGreaterThanOrEqual(r.pageOracleMass[i] + 1e-5, r.questMass[i])
        }
        XCTAssertTrue(zip(r.pageOracleMass, r.questMass).contains { $0 > $1 + 1e-3 }, "the bound ranks some pages differently from their mass")
    }

    func testTooFewTokensIsAClearError() throws {
        XCTAssertThrowsError(try PremiseProbe.run(model: try model(), tokens: ids(50, seed: 3), sequenceLength: 64, window: 4)) {
            XCTAssertTrue($0.localizedDescription.contains("at least one sequence of 64 tokens"), $0.localizedDescription)
        }
    }
}
