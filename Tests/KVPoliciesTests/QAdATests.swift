import XCTest
import KVCacheCore
import KVPolicies
import KVTensor

/// QAdA against an independent brute-force oracle: random keys, values and queries fed straight
/// into a cache (2 layers, 4 query heads, 2 KV heads, d 16); the oracle recomputes, in Double and
/// from the explicit keys, each decode step's bulk mean and covariance, the second-moment estimate
/// of the bulk attention mass, the decision per KV head (any query head of its group at or above
/// the threshold) and the attention output over the full or local tokens.
final class QAdATests: XCTestCase {
    static let shape = CacheShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 16)
    static let prompt = 120, steps = 40, sinks = 4, window = 16

    /// Every token's keys/values [layers][positions][Hkv * d] and queries [layers][positions][H * d].
    struct Data {
        var keys: [[[Float]]] = [], values: [[[Float]]] = [], queries: [[[Float]]] = []
        init(seed: UInt64) {
            var rng = SeededRandom(seed: seed)
            let s = QAdATests.shape, total = QAdATests.prompt + QAdATests.steps
            func vec(_ n: Int, _ scale: Float) -> [Float] { (0..<n).map { _ in (rng.nextUniform() * 2 - 1) * scale } }
            for _ in 0..<s.layers {
                keys.append((0..<total).map { _ in vec(s.kvHeads * s.headDim, 1) })
                values.append((0..<total).map { _ in vec(s.kvHeads * s.headDim, 1) })
                // Query norms vary from step to step, so attention ranges from flat to peaked.
                queries.append((0..<total).map { t in vec(s.queryHeads * s.headDim, 0.5 + Float(t % 7)) })
            }
        }
    }

    /// Runs a cache over `data`: dense prefill of the prompt, then `steps` decode steps. Per step:
    /// the output [layers][H * d] and the cache (for its figures) after the step.
    static func run(_ policy: CachePolicy, _ data: Data, afterStep: (_ step: Int, _ out: [[Float]], KVCache) -> Void = { _, _, _ in }) -> KVCache {
        let s = shape, cache = KVCache(shape: s, policy: policy)
        for l in 0..<s.layers {
            let q = data.queries[l][0..<prompt].flatMap { $0 }, k = data.keys[l][0..<prompt].flatMap { $0 }
            let v = data.values[l][0..<prompt].flatMap { $0 }
            var out = [Float](repeating: 0, count: prompt * s.queryHeads * s.headDim)
            cache.attention(layer: l, phase: .prefill, rows: prompt, queries: q, keys: k, values: v,
                            positions: Array(0..<prompt), output: &out)
        }
        cache.endStep(phase: .prefill)
        for t in 0..<steps {
            let p = prompt + t
            var outs: [[Float]] = []
            for l in 0..<s.layers {
                var out = [Float](repeating: 0, count: s.queryHeads * s.headDim)
                cache.attention(layer: l, phase: .decode, rows: 1, queries: data.queries[l][p], keys: data.keys[l][p],
                                values: data.values[l][p], positions: [p], output: &out)
                outs.append(out)
            }
            cache.endStep(phase: .decode)
            afterStep(t, outs, cache)
        }
        return cache
    }

    /// Positions attended locally by a query at position p (n = p + 1 tokens), and the bulk.
    static func split(_ p: Int) -> (local: [Int], bulk: [Int]) {
        let n = p + 1, s = min(sinks, n), start = max(n - window, s)
        return (Array(0..<s) + Array(start..<n), Array(s..<start))
    }

    /// The key of (layer, KV head) at position i, in Double.
    static func key(_ d: Data, _ l: Int, _ h: Int, _ i: Int) -> [Double] {
        let hd = shape.headDim
        return d.keys[l][i][(h * hd)..<((h + 1) * hd)].map(Double.init)
    }

    /// The oracle's estimate of the bulk mass for the KV head: the largest over its query heads.
    static func oracleFraction(_ d: Data, layer l: Int, head h: Int, position p: Int) -> Double {
        let hd = shape.headDim, g = shape.groupSize, scale = 1 / Double(hd).squareRoot()
        let (local, bulk) = split(p)
        let K = bulk.map { key(d, l, h, $0) }, nb = Double(bulk.count)
        let mu = (0..<hd).map { j in K.reduce(0.0) { $0 + $1[j] } / nb }
        var sigma = [[Double]](repeating: [Double](repeating: 0, count: hd), count: hd)
        for k in K { for a in 0..<hd { for b in 0..<hd { sigma[a][b] += (k[a] - mu[a]) * (k[b] - mu[b]) / nb } } }
        var best = -Double.infinity
        for m in 0..<g {
            let q = d.queries[l][p][((h * g + m) * hd)..<((h * g + m + 1) * hd)].map(Double.init)
            let aLocal = local.reduce(0.0) { acc, i in acc + exp(zip(q, key(d, l, h, i)).reduce(0.0) { $0 + $1.0 * $1.1 } * scale) }
            let qmu = zip(q, mu).reduce(0.0) { $0 + $1.0 * $1.1 }
            var qsq = 0.0
            for a in 0..<hd { for b in 0..<hd { qsq += q[a] * sigma[a][b] * q[b] } }
            let aHat = nb * exp(qmu * scale + qsq * scale * scale / 2)
            best = max(best, aHat / (aLocal + aHat))
        }
        return best
    }

    /// Exact attention of query head qh (layer l, position p) over `positions`, in Double.
    static func attend(_ d: Data, layer l: Int, queryHead qh: Int, position p: Int, over positions: [Int]) -> [Double] {
        let hd = shape.headDim, h = qh / shape.groupSize, scale = 1 / Double(hd).squareRoot()
        let q = d.queries[l][p][(qh * hd)..<((qh + 1) * hd)].map(Double.init)
        let s = positions.map { i in zip(q, key(d, l, h, i)).reduce(0.0) { $0 + $1.0 * $1.1 } * scale }
        let top = s.max()!, w = s.map { exp($0 - top) }, z = w.reduce(0, +)
        var out = [Double](repeating: 0, count: hd)
        for (r, i) in positions.enumerated() {
            for j in 0..<hd { out[j] += w[r] / z * Double(d.values[l][i][h * hd + j]) }
        }
        return out
    }

    /// A threshold in the widest gap of the middle of the oracle's fractions: both decisions occur
    /// and none lies within float rounding of it.
    static func threshold(_ fractions: [Double]) -> Double {
        let f = fractions.sorted(), lo = f.count / 4, hi = 3 * f.count / 4
        var best = lo
        for i in lo..<hi where f[i + 1] - f[i] > f[best + 1] - f[best] { best = i }
        return (f[best] + f[best + 1]) / 2
    }

    func testDecisionsOutputsAndBytesMatchTheOracle() throws {
        let data = Data(seed: 7), s = Self.shape, d = s.headDim, g = s.groupSize
        var fractions: [[[Double]]] = []               // [step][layer][kvHead]
        for t in 0..<Self.steps {
            fractions.append((0..<s.layers).map { l in (0..<s.kvHeads).map { Self.oracleFraction(data, layer: l, head: $0, position: Self.prompt + t) } })
        }
        let thr = Self.threshold(fractions.flatMap { $0.flatMap { $0 } })
        let policy = try QAdA(.init(sinks: Self.sinks, window: Self.window, threshold: thr))
        var previous = [[Int]](repeating: [Int](repeating: 0, count: s.kvHeads), count: s.layers)
        var expectedBytes = 0, fullCount = 0, made = 0, worst = 0.0
        let cache = Self.run(policy, data) { t, outs, _ in
            let p = Self.prompt + t, (local, _) = Self.split(p)
            for l in 0..<s.layers {
                for h in 0..<s.kvHeads {
                    let long = fractions[t][l][h] >= thr
                    let dec = policy.decisions(layer: l, head: h)
                    XCTAssertEqual(dec.made, t + 1, "one decision per step")
                    XCTAssertEqual(dec.full - previous[l][h], long ? 1 : 0, "step \(t) layer \(l) KV head \(h): oracle f = \(fractions[t][l][h]), threshold \(thr)")
                    previous[l][h] = dec.full
                    fullCount += long ? 1 : 0; made += 1
                    expectedBytes += (long ? p + 1 : local.count) * d * 4 * 2 + (d + d * d) * 4
                    for m in 0..<g {
                        let qh = h * g + m
                        let ref = Self.attend(data, layer: l, queryHead: qh, position: p, over: long ? Array(0...p) : local)
                        for j in 0..<d { worst = max(worst, abs(Double(outs[l][qh * d + j]) - ref[j])) }
                    }
                }
            }
        }
        XCTAssertGreaterThan(fullCount, 0); XCTAssertLessThan(fullCount, made, "both decisions occur")
        XCTAssertLessThan(worst, 1e-5, "attention over the chosen tokens")
        XCTAssertEqual(cache.stats.decodeBytesRead, expectedBytes, "local or full K/V rows plus the moments")
        XCTAssertEqual(cache.stats.decodeMetadataBytesRead, Self.steps * s.layers * s.kvHeads * (d + d * d) * 4)
        XCTAssertEqual(policy.fullFraction, Double(fullCount) / Double(made), accuracy: 1e-12)
        XCTAssertEqual(policy.runMetrics.first?.0, "qada_full_fraction")
        // Everything stays stored: bytes stored are the full cache's.
        let full = Self.run(FullCachePolicy(), data)
        XCTAssertEqual(cache.stats.bytesStored, full.stats.bytesStored)
        XCTAssertLessThan(cache.stats.decodeBytesRead, full.stats.decodeBytesRead)
    }

    func testIncrementalMomentsEqualRecomputedOnes() throws {
        let data = Data(seed: 3), s = Self.shape, d = s.headDim
        let policy = try QAdA(.init(sinks: Self.sinks, window: Self.window, threshold: 0.5))
        _ = Self.run(policy, data)
        let (_, bulk) = Self.split(Self.prompt + Self.steps - 1)
        for l in 0..<s.layers {
            for h in 0..<s.kvHeads {
                let m = policy.moments(layer: l, head: h), K = bulk.map { Self.key(data, l, h, $0) }, n = Double(K.count)
                XCTAssertEqual(m.count, K.count)
                for a in 0..<d {
                    let mu = K.reduce(0.0) { $0 + $1[a] } / n
                    XCTAssertEqual(Double(m.mean[a]), mu, accuracy: 1e-5, "mean[\(a)] layer \(l) head \(h)")
                    for b in 0..<d {
                        let c = K.reduce(0.0) { $0 + ($1[a] - mu) * ($1[b] - K.reduce(0.0) { $0 + $1[b] } / n) } / n
                        XCTAssertEqual(Double(m.covariance[a * d + b]), c, accuracy: 1e-5, "cov[\(a), \(b)] layer \(l) head \(h)")
                    }
                }
            }
        }
    }

    func testThresholdZeroIsTheFullCache() throws {
        let data = Data(seed: 5)
        var full: [[[Float]]] = [], qada: [[[Float]]] = []
        _ = Self.run(FullCachePolicy(), data) { _, o, _ in full.append(o) }
        let policy = try QAdA(.init(sinks: Self.sinks, window: Self.window, threshold: 0))
        _ = Self.run(policy, data) { _, o, _ in qada.append(o) }
        XCTAssertEqual(qada, full)
        XCTAssertEqual(policy.fullFraction, 1)
    }

    func testThresholdAboveOneIsLocalOnlyAttention() throws {
        let data = Data(seed: 9), s = Self.shape, d = s.headDim
        let policy = try QAdA(.init(sinks: Self.sinks, window: Self.window, threshold: 1.01))
        var worst = 0.0
        _ = Self.run(policy, data) { t, outs, _ in
            let p = Self.prompt + t
            for l in 0..<s.layers {
                for qh in 0..<s.queryHeads {      // sinks + window by hand (StreamingLLM's tokens)
                    let ref = Self.attend(data, layer: l, queryHead: qh, position: p, over: Array(0..<Self.sinks) + Array((p + 1 - Self.window)...p))
                    for j in 0..<d { worst = max(worst, abs(Double(outs[l][qh * d + j]) - ref[j])) }
                }
            }
        }
        XCTAssertLessThan(worst, 1e-5)
        XCTAssertEqual(policy.fullFraction, 0)
    }

    /// Stacked after an eviction, the moments are those of the bulk the store still holds.
    func testMomentsFollowAnEvictingStack() throws {
        let data = Data(seed: 11), s = Self.shape, d = s.headDim
        let qada = try QAdA(.init(sinks: Self.sinks, window: Self.window, threshold: 0.5))
        let cache = Self.run(try PolicyStack([try H2O(budget: .tokens(64)), qada]), data)
        for l in 0..<s.layers {
            for h in 0..<s.kvHeads {
                let st = cache.stores[l][h], last = Self.prompt + Self.steps - 1
                let bulk = (0..<st.count).map { st.position($0) }.filter { $0 >= Self.sinks && $0 < last + 1 - Self.window }
                let m = qada.moments(layer: l, head: h)
                XCTAssertEqual(m.count, bulk.count)
                XCTAssertLessThan(bulk.count, last + 1 - Self.window - Self.sinks, "the eviction removed bulk tokens")
                for a in 0..<d {
                    let mu = bulk.reduce(0.0) { $0 + Self.key(data, l, h, $1)[a] } / Double(bulk.count)
                    XCTAssertEqual(Double(m.mean[a]), mu, accuracy: 1e-5)
                }
            }
        }
    }

    func testConfigReadsAndRejects() throws {
        XCTAssertThrowsError(try QAdA(.init(window: 0)))
        XCTAssertThrowsError(try QAdA(.init(threshold: -0.1)))
        let p = try QAdA(.init())
        XCTAssertEqual(p.config.sinks, 4); XCTAssertEqual(p.config.window, 64); XCTAssertEqual(p.config.threshold, 0.5)
        XCTAssertEqual(p.layout.selects, true)
    }
}
