import ArgumentParser
import Foundation
import KVCache
import KVPolicies
import KVTensor

/// Decode attention of the selection policies next to the full cache, in one run: does reading
/// fewer bytes make the step faster, and how close does full attention get to the memory bandwidth?
struct AttentionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attention",
        abstract: "One decode attention step per layer: full cache vs Quest vs Loki vs oracle top-k (median of repeats).",
        discussion: """
        Caches are filled with seeded random keys/values (no model: attention only), then each repeat \
        times one decode step (KVCache.attention for every layer: append, select, attend) per policy, \
        interleaved so the policies see the same machine state. Full attention's achieved bandwidth \
        (K/V bytes read per step / step time) is compared with a streaming read of a large buffer \
        measured in the same run with the same number of threads. Build with -c release.
        Targets: Quest >= 5x at 32K, Loki >= 1.8x at 16K, full attention >= 70% of bandwidth.
        """)

    @Option(help: "Contexts (comma-separated).")
    var contexts: String = "4096,16384,32768"
    @Option var layers: Int = 4
    @Option(help: "Query heads.") var heads: Int = 8
    @Option(name: .customLong("kv-heads")) var kvHeads: Int = 2
    @Option(name: .customLong("head-dim")) var headDim: Int = 128
    @Option(help: "Timed decode steps per policy; the median is reported.")
    var repeats: Int = 15
    @Option(name: .customLong("quest-budget")) var questBudget: Int = 2048
    @Option(name: .customLong("page-size")) var pageSize: Int = 16
    @Option(name: .customLong("quest-dense-layers"), help: "Quest's dense bottom layers (0: every layer selects, the kernel comparison of the paper).")
    var questDenseLayers: Int = 0
    @Option(name: .customLong("loki-rank"), help: "Loki rank as a fraction of d.") var lokiRank: Double = 0.25
    @Option(name: .customLong("loki-k"), help: "Loki k as a fraction of the context.") var lokiK: Double = 0.25
    @Option(name: .customLong("oracle-k")) var oracleK: Int = 2048
    @Option(help: "Attention threads (and bandwidth-probe threads).")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Option(name: .customLong("bandwidth-mib"), help: "Size of the buffer the bandwidth probe streams.")
    var bandwidthMiB: Int = 1024

    func run() throws {
        let ctxs = try parseIds(contexts, field: "--contexts")
        let shape = CacheShape(layers: layers, queryHeads: heads, kvHeads: kvHeads, headDim: headDim)
        let bw = Self.streamBandwidth(bytes: bandwidthMiB << 20, threads: threads)
        print("attention: \(layers) layers, \(heads) query heads, \(kvHeads) KV heads, d \(headDim), fp32; \(threads) threads; median of \(repeats) steps")
        print(String(format: "memory bandwidth (streaming read, %d threads, %d MiB): %.1f GB/s", threads, bandwidthMiB, bw / 1e9))
        print("policies: quest(budget \(questBudget), page \(pageSize), dense layers \(questDenseLayers)), " +
              "loki(r = \(lokiRank) d, k = \(lokiK) T), oracle_topk(k \(oracleK)); all kv_group")
        print("")
        print("context    full ms   quest ms (x)      loki ms (x)       oracle ms (x)     full GB/s (% bw)   MiB read/step full/quest/loki/oracle")
        var results: [(Int, [Double])] = []
        for T in ctxs {
            let policies: [(String, () throws -> CachePolicy)] = [
                ("full", { FullCachePolicy() }),
                ("quest", { try Quest(tokenBudget: questBudget, pageSize: pageSize, denseLayers: questDenseLayers) }),
                ("loki", { try Loki(calibration: .identity(layers: layers, kvHeads: kvHeads, headDim: headDim),
                                    rank: .fraction(lokiRank), topK: .fraction(lokiK)) }),
                ("oracle", { try OracleTopK(topK: .tokens(oracleK)) }),
            ]
            var rng = SeededRandom(seed: UInt64(T))
            let width = kvHeads * headDim
            // One set of random K/V per (layer, KV head), shared by every cache (copied in).
            var kv = [Float](repeating: 0, count: layers * T * width * 2)
            for i in kv.indices { kv[i] = rng.nextUniform() * 2 - 1 }
            let caches: [KVCache] = try policies.map { _, make in
                let c = KVCache(shape: shape, policy: try make(), initialCapacity: T + repeats + 4)
                c.threads = threads
                kv.withUnsafeBufferPointer { b in
                    for l in 0..<layers {
                        let base = b.baseAddress! + l * T * width * 2
                        for h in 0..<kvHeads {
                            let st = c.stores[l][h]
                            for t in 0..<T {
                                st.append(key: base + t * width + h * headDim, value: base + T * width + t * width + h * headDim, position: t)
                            }
                        }
                    }
                }
                return c
            }
            kv = []
            // Decode inputs: one random query/key/value row per step and layer.
            let steps = repeats + 1
            var q = [Float](repeating: 0, count: steps * layers * heads * headDim)
            var nk = [Float](repeating: 0, count: steps * layers * width), nv = nk
            for i in q.indices { q[i] = rng.nextUniform() * 2 - 1 }
            for i in nk.indices { nk[i] = rng.nextUniform() * 2 - 1; nv[i] = rng.nextUniform() * 2 - 1 }
            var out = [Float](repeating: 0, count: heads * headDim)
            var times = Array(repeating: [Double](), count: caches.count)
            var bytes = Array(repeating: 0, count: caches.count)
            for s in 0..<steps {                       // step 0 warms up (Quest builds its page bounds)
                for (i, cache) in caches.enumerated() {
                    let t = q.withUnsafeBufferPointer { qb in nk.withUnsafeBufferPointer { kb in nv.withUnsafeBufferPointer { vb in
                        out.withUnsafeMutableBufferPointer { ob in
                            clock {
                                for l in 0..<layers {
                                    let o = s * layers + l
                                    cache.attention(layer: l, phase: .decode, rows: 1, queries: qb.baseAddress! + o * heads * headDim,
                                                    keys: kb.baseAddress! + o * width, values: vb.baseAddress! + o * width,
                                                    positions: [T + s], output: ob.baseAddress!)
                                }
                            }
                        }
                    } } }
                    cache.endStep(phase: .decode)
                    if s > 0 { times[i].append(t) }
                    bytes[i] = cache.stats.lastStepBytesRead
                }
            }
            let med = times.map { $0.sorted()[$0.count / 2] * 1000 }
            let fullGBs = Double(bytes[0]) / (med[0] / 1000) / 1e9
            let mib = bytes.map { String(format: "%.1f", Double($0) / 1048576) }.joined(separator: "/")
            print(String(format: "%7d  %8.3f  %8.3f (%5.2fx)  %8.3f (%5.2fx)  %8.3f (%5.2fx)  %7.1f (%5.1f%%)   %@",
                         T, med[0], med[1], med[0] / med[1], med[2], med[0] / med[2], med[3], med[0] / med[3],
                         fullGBs, 100 * fullGBs * 1e9 / bw, mib as NSString))
            results.append((T, med + [fullGBs * 1e9 / bw]))
        }
        print("")
        for (T, r) in results {
            if T == 32768 { print(String(format: "target quest >= 5x at 32K: %.2fx %@", r[0] / r[1], r[0] / r[1] >= 5 ? "ok" : "MISSED")) }
            if T == 16384 { print(String(format: "target loki >= 1.8x at 16K: %.2fx %@", r[0] / r[2], r[0] / r[2] >= 1.8 ? "ok" : "MISSED")) }
        }
        if let worst = results.filter({ $0.0 >= 16384 }).map({ $0.1[4] }).min() {
            print(String(format: "target full attention >= 70%% of bandwidth (contexts >= 16K): %.0f%% %@", worst * 100, worst >= 0.7 ? "ok" : "MISSED"))
        }
    }

    /// Bytes per second of a SIMD streaming read of a `bytes` buffer by `threads` threads (best of 5).
    static func streamBandwidth(bytes: Int, threads: Int) -> Double {
        let n = bytes / 4
        let buf = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { buf.deallocate() }
        for i in 0..<n { buf[i] = Float(i & 255) }
        let parts = max(threads, 1)
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: parts)
        defer { sums.deallocate() }
        var best = 0.0
        for _ in 0..<5 {
            let t = clock {
                DispatchQueue.concurrentPerform(iterations: parts) { p in
                    let lo = n / parts * p, hi = p == parts - 1 ? n : n / parts * (p + 1)
                    let raw = UnsafeRawPointer(buf)
                    var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                    var i = lo
                    while i + 32 <= hi {
                        a0 += raw.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                        a1 += raw.loadUnaligned(fromByteOffset: i * 4 + 32, as: SIMD8<Float>.self)
                        a2 += raw.loadUnaligned(fromByteOffset: i * 4 + 64, as: SIMD8<Float>.self)
                        a3 += raw.loadUnaligned(fromByteOffset: i * 4 + 96, as: SIMD8<Float>.self)
                        i += 32
                    }
                    var s = (a0 + a1 + a2 + a3).sum()
                    while i < hi { s += buf[i]; i += 1 }
                    sums[p] = s
                }
            }
            best = max(best, Double(n * 4) / t)
        }
        return best
    }
}
