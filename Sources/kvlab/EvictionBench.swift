import ArgumentParser
import Foundation
import KVCache
import KVModel
import KVPolicies
import KVTensor

/// Decode step time of each eviction policy next to the full cache, in one run: is the
/// bookkeeping cheap compared with the attention it saves?
struct EvictionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eviction",
        abstract: "Decode step time per eviction policy vs the full cache at the same contexts (median of repeats).",
        discussion: """
        For context T and budget B, three caches are timed over the same decode steps: the full cache \
        holding T tokens (t_full), a full cache holding B tokens (t_small: attention over what a policy keeps), \
        and each policy after compressing T to B (t_policy). Bookkeeping overhead = (t_policy - t_small) / \
        (t_full - t_small): the share of the saved attention time the policy spends on scoring and eviction. \
        Target: <= 0.10.
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String = "synthetic:small,layers=4,heads=8,kv_heads=2,hidden=256"
    @Option(help: "Contexts (comma-separated).")
    var contexts: String = "4096,16384"
    @Option(help: "Fraction of the context each policy keeps.")
    var keep: Double = 0.125
    @Option(help: "Decode steps timed per repeat.")
    var steps: Int = 64
    @Option(help: "Repeats; medians are reported.")
    var repeats: Int = 5
    @Option(help: "BLAS and attention threads.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func policies(_ budget: Int) throws -> [(String, CachePolicy)] {
        let b = Budget.tokens(budget)
        return [
            ("streaming_llm", try StreamingLLM(budget: b)),
            ("h2o", try H2O(budget: b)),
            ("tova", try TOVA(budget: b)),
            ("knorm (always)", try Knorm(budget: b, schedule: .always)),
            ("snapkv (prefill)", try SnapKV(budget: b)),
            ("pyramidkv (prefill)", try PyramidKV(budget: b)),
            ("knorm (prefill)", try Knorm(budget: b)),
        ]
    }

    func run() throws {
        let lm = try loadModel(model, threads: threads)
        let ctxs = try parseIds(contexts, field: "--contexts")
        var rng = SeededRandom(seed: 99)
        let V = lm.config.vocabSize
        print("model \(model), \(threads) threads, keep \(keep), \(steps) steps x \(repeats) repeats (median ms per decode step)")
        print("context  policy               t_policy   t_small    t_full   overhead  (KV stored / full)")
        for T in ctxs {
            let prompt = (0..<T).map { _ in Int(rng.next() % UInt64(V)) }
            let decode = (0..<(steps * repeats)).map { _ in Int(rng.next() % UInt64(V)) }
            let B = max(Int(Double(T) * keep), 1)
            let tFull = time(FullCachePolicy(), prompt: prompt, decode: decode, lm: lm).ms
            let tSmall = time(FullCachePolicy(), prompt: Array(prompt.suffix(B)), decode: decode, lm: lm).ms
            for (name, p) in try policies(B) {
                let r = time(p, prompt: prompt, decode: decode, lm: lm)
                let overhead = (r.ms - tSmall) / (tFull - tSmall)
                print(String(format: "%7d  %-20@ %8.3f  %8.3f  %8.3f  %8.3f   %.3f", T, name as NSString, r.ms, tSmall, tFull,
                             overhead, r.storedFraction))
            }
        }
    }

    /// Prefill (untimed), then `repeats` blocks of `steps` decode steps; median ms per step.
    func time(_ policy: CachePolicy, prompt: [Int], decode: [Int], lm: LlamaModel) -> (ms: Double, storedFraction: Double) {
        let cache = lm.makeCache(policy: policy, initialCapacity: prompt.count + decode.count)
        _ = lm.forward(prompt, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        var blocks: [Double] = []
        var pos = prompt.count
        for r in 0..<repeats {
            let t = clock {
                for i in 0..<steps {
                    _ = lm.forward([decode[r * steps + i]], startPosition: pos, cache: cache, phase: .decode)
                    pos += 1
                }
            }
            blocks.append(t * 1000 / Double(steps))
        }
        let full = Double(cache.stats.tokensSeen * cache.shape.fullBytesPerToken)
        return (blocks.sorted()[blocks.count / 2], Double(cache.stats.bytesStored) / full)
    }
}
