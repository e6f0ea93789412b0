import ArgumentParser
import Foundation
import KVCacheCore
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
        interleaved so the policies see the same machine state. Each repeat also times one streaming \
        read of a large buffer with the same threads (the memory bandwidth, measured under the same \
        conditions); full attention's achieved bandwidth is its K/V bytes read per step over its step \
        time. Medians are reported (and the best of the repeats on a second line). Build with -c release.
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
    @Option(name: .customLong("bandwidth-mib"), help: "Size of the buffer the bandwidth probe streams (well above the last-level cache).")
    var bandwidthMiB: Int = 512
    @Option(help: "Time only this policy next to full (quest, loki or oracle), e.g. for profiling.")
    var only: String?

    func run() throws {
        let ctxs = try parseIds(contexts, field: "--contexts")
        let shape = CacheShape(layers: layers, queryHeads: heads, kvHeads: kvHeads, headDim: headDim)
        let probe = BandwidthProbe(bytes: bandwidthMiB << 20, threads: threads)
        print("attention: \(layers) layers, \(heads) query heads, \(kvHeads) KV heads, d \(headDim), fp32; \(threads) threads; median of \(repeats) steps")
        print("policies: quest(budget \(questBudget), page \(pageSize), dense layers \(questDenseLayers)), " +
              "loki(r = \(lokiRank) d, k = \(lokiK) T), oracle_topk(k \(oracleK)); all kv_group")
        print("bandwidth: streaming read of \(bandwidthMiB) MiB with \(threads) threads, once per repeat next to the steps")
        print("")
        print("context    full ms   quest ms (x)      loki ms (x)       oracle ms (x)     bw GB/s  full GB/s (% bw)  MiB read/step full/quest/loki/oracle")
        var results: [(Int, [String: Double], Double)] = []
        var bestLines: [String] = []
        for T in ctxs {
            let quest = Quest.Config.descriptor.name, loki = Loki.Config.descriptor.name
            let policies: [(String, () throws -> CachePolicy)] = [
                ("full", { FullCachePolicy() }),
                (quest, { try Quest(tokenBudget: questBudget, pageSize: pageSize, denseLayers: questDenseLayers) }),
                (loki, { try Loki(calibration: .identity(layers: layers, kvHeads: kvHeads, headDim: headDim),
                                    rank: .fraction(lokiRank), topK: .fraction(lokiK), gqa: .kvGroup, phases: .decode) }),
                ("oracle", { try OracleTopK(topK: .tokens(oracleK)) }),
            ].filter { only == nil || $0.0 == "full" || $0.0 == only }
            var rng = SeededRandom(seed: UInt64(T))
            // One set of random K/V per (layer, KV head), copied into every cache.
            let caches = prefilledCaches(try policies.map { try $0.1() }, shape: shape, context: T, reserve: repeats + 4,
                                         threads: threads) { rng.nextUniform() * 2 - 1 }
            // Decode inputs: one random query/key/value row per step and layer.
            let steps = repeats + 1
            let (q, nk, nv) = decodeInputs(shape: shape, steps: steps) { rng.nextUniform() * 2 - 1 }
            var bandwidths: [Double] = []
            // Step 0 warms up (Quest builds its page bounds, Loki its copy); bandwidth is measured between steps.
            let (times, bytes) = timeDecodeSteps(caches, steps: steps, layers: layers, firstPosition: T,
                                                 queries: q, keys: nk, values: nv) { s in
                let bwNow = probe.measure()
                if s > 0 { bandwidths.append(bwNow) }
            }
            let med = times.map { median($0) * 1000 }
            let best = times.map { $0.min()! * 1000 }
            let bw = median(bandwidths), bwBest = bandwidths.max()!
            let fullGBs = Double(bytes[0]) / (med[0] / 1000) / 1e9
            var row = String(format: "%7d  %8.3f", T, med[0])
            var bestRow = String(format: "  best   %8.3f", best[0])
            var speedups: [String: Double] = [:]
            for name in [quest, loki, "oracle"] {
                if let i = policies.firstIndex(where: { $0.0 == name }) {
                    row += String(format: "  %8.3f (%5.2fx)", med[i], med[0] / med[i])
                    bestRow += String(format: "  %8.3f (%5.2fx)", best[i], best[0] / best[i])
                    speedups[name] = med[0] / med[i]
                } else {
                    row += "        -          "; bestRow += "        -          "
                }
            }
            let mib = bytes.map { String(format: "%.1f", Double($0) / 1048576) }.joined(separator: "/")
            print(row + String(format: "   %6.1f  %6.1f (%5.1f%%)   %@", bw / 1e9, fullGBs, 100 * fullGBs * 1e9 / bw, mib as NSString))
            let fullBest = Double(bytes[0]) / (best[0] / 1000) / 1e9
            bestLines.append(String(format: "%7d", T) + bestRow.dropFirst(7) +
                             String(format: "   %6.1f  %6.1f (%5.1f%%)", bwBest / 1e9, fullBest, 100 * fullBest * 1e9 / bwBest))
            results.append((T, speedups, fullGBs * 1e9 / bw))
        }
        print("")
        print("best of the repeats (fastest step; highest bandwidth):")
        for l in bestLines { print(l) }
        print("")
        for (T, sp, _) in results {
            if T == 32768, let q = sp[Quest.Config.descriptor.name] { print(String(format: "target quest >= 5x at 32K: %.2fx %@", q, q >= 5 ? "ok" : "MISSED")) }
            if T == 16384, let l = sp[Loki.Config.descriptor.name] { print(String(format: "target loki >= 1.8x at 16K: %.2fx %@", l, l >= 1.8 ? "ok" : "MISSED")) }
        }
        if let worst = results.filter({ $0.0 >= 16384 }).map({ $0.2 }).min() {
            print(String(format: "target full attention >= 70%% of bandwidth (contexts >= 16K, medians): %.0f%% %@", worst * 100, worst >= 0.7 ? "ok" : "MISSED"))
        }
    }
}

/// Bytes per second of a SIMD streaming read of a large buffer by `threads` threads.
final class BandwidthProbe {
    let n: Int
    let threads: Int
    let buf: UnsafeMutablePointer<Float>
    let sums: UnsafeMutablePointer<Float>

    init(bytes: Int, threads: Int) {
        n = bytes / 4
        self.threads = max(threads, 1)
        buf = .allocate(capacity: n)
        for i in 0..<n { buf[i] = Float(i & 255) }
        sums = .allocate(capacity: self.threads)
    }
    deinit { buf.deallocate(); sums.deallocate() }

    /// One pass: each thread sums a contiguous slice (four SIMD8 accumulators).
    func measure() -> Double {
        let n = self.n, parts = threads, buf = self.buf, sums = self.sums
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
        return Double(n * 4) / t
    }
}
