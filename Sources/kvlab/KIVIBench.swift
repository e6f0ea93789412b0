import ArgumentParser
import Foundation
import KVCacheCore
import KVPolicies
import KVTensor

/// Decode attention over a KIVI-quantized cache (2 and 4 bits) next to the Float32 cache, in one run.
struct KIVIBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: KIVI.Config.descriptor.name,
        abstract: "One decode attention step per layer: Float32 cache vs KIVI 4-bit vs KIVI 2-bit vs the F16 cache (median of repeats, interleaved).",
        discussion: """
        Caches are filled with the same seeded random keys/values (no model: attention only) and the \
        KIVI caches quantize everything but the residual; each repeat then times one decode step \
        (KVCache.attention for every layer: append, attend from the packed codes, quantize at the step \
        end when the residual fills) per cache, interleaved. Reports the median step time, the ratio to \
        the Float32 cache either way, bytes read per step and bytes stored; the last columns time the         full cache with kv_dtype f16 (keys and values as binary16) and KIVI 2-bit against it. Build         with -c release.
        """)

    @Option(help: "Contexts (comma-separated).") var contexts: String = "16384"
    @Option var layers: Int = 4
    @Option(help: "Query heads.") var heads: Int = 8
    @Option(name: .customLong("kv-heads")) var kvHeads: Int = 2
    @Option(name: .customLong("head-dim")) var headDim: Int = 128
    @Option(name: .customLong("group-size")) var groupSize: Int = 32
    @Option var residual: Int = 128
    @Option(help: "Timed decode steps per cache; the median is reported.") var repeats: Int = 21
    @Option(help: "Attention threads.") var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func run() throws {
        let ctxs = try parseIds(contexts, field: "--contexts")
        let shape = CacheShape(layers: layers, queryHeads: heads, kvHeads: kvHeads, headDim: headDim)
        print("kivi bench: \(layers) layers, \(heads) query heads, \(kvHeads) KV heads, d \(headDim); G \(groupSize), R \(residual); \(threads) threads; median of \(repeats) steps")
        print("")
        print("context   fp32 ms   kivi4 ms (fp32/kivi4)   kivi2 ms (fp32/kivi2)   kivi4/fp32 kivi2/fp32 (time)   MiB read/step fp32/kivi4/kivi2/fp16   MiB stored fp32/kivi4/kivi2/fp16   fp16 ms (fp32/fp16)   fp16/kivi2")
        for T in ctxs {
            let policies: [CachePolicy] = [FullCachePolicy(), try KIVI(bits: 4, groupSize: groupSize, residual: residual),
                                           try KIVI(bits: 2, groupSize: groupSize, residual: residual), FullCachePolicy()]
            var rng = SeededRandom(seed: UInt64(T))
            let caches = prefilledCaches(policies, shape: shape, context: T, reserve: repeats + 4, threads: threads,
                                         dtypes: [.f32, .f32, .f32, .f16]) { rng.nextNormal() }
            for c in caches { c.endStep(phase: .prefill) }
            let steps = repeats + 1
            let (q, nk, nv) = decodeInputs(shape: shape, steps: steps) { rng.nextNormal() }
            let (times, bytes) = timeDecodeSteps(caches, steps: steps, layers: layers, firstPosition: T,
                                                 queries: q, keys: nk, values: nv)   // step 0 warms up
            let med = times.map { median($0) * 1000 }
            let mib = bytes.map { String(format: "%.2f", Double($0) / 1048576) }.joined(separator: "/")
            let stored = caches.map { String(format: "%.2f", Double($0.stats.bytesStored) / 1048576) }.joined(separator: "/")
            print(String(format: "%7d  %8.3f   %8.3f (%5.2fx)        %8.3f (%5.2fx)        %6.2f     %6.2f               %@        %@      %8.3f (%5.2fx)      %5.2fx",
                         T, med[0], med[1], med[0] / med[1], med[2], med[0] / med[2], med[1] / med[0], med[2] / med[0],
                         mib as NSString, stored as NSString, med[3], med[0] / med[3], med[3] / med[2]))
        }
    }
}
