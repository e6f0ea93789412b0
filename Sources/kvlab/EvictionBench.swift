import ArgumentParser
import Foundation
import KVCacheCore
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
            (StreamingLLM.Config.descriptor.name, try StreamingLLM(budget: b)),
            (H2O.Config.descriptor.name, try H2O(budget: b)),
            (TOVA.Config.descriptor.name, try TOVA(budget: b)),
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
        print("model \(model), \(threads) threads, keep \(keep), \(steps) steps x \(repeats) repeats, interleaved (median ms per decode step)")
        print("context  policy                 t_policy   t_small    t_full   overhead   KV stored/full")
        for T in ctxs {
            let prompt = (0..<T).map { _ in Int(rng.next() % UInt64(V)) }
            let decode = (0..<(steps * repeats)).map { _ in Int(rng.next() % UInt64(V)) }
            let B = max(Int(Double(T) * keep), 1)
            // Every cache is prefilled first, then timed in turns, so load changes hit all alike.
            var runs: [(name: String, cache: KVCache, position: Int)] = []
            func prepare(_ name: String, _ policy: CachePolicy, _ tokens: [Int]) {
                let cache = lm.makeCache(policy: policy, initialCapacity: tokens.count + decode.count)
                _ = lm.forward(tokens, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
                runs.append((name, cache, tokens.count))
            }
            prepare("full (T tokens)", FullCachePolicy(), prompt)
            prepare("full (B tokens)", FullCachePolicy(), Array(prompt.suffix(B)))
            for (name, p) in try policies(B) { prepare(name, p, prompt) }
            var times = Array(repeating: [Double](), count: runs.count)
            for r in 0..<repeats {
                for i in runs.indices {
                    let cache = runs[i].cache
                    var pos = runs[i].position
                    let t = clock {
                        for k in 0..<steps {
                            _ = lm.forward([decode[r * steps + k]], startPosition: pos, cache: cache, phase: .decode)
                            pos += 1
                        }
                    }
                    runs[i].position = pos
                    times[i].append(t * 1000 / Double(steps))
                }
            }
            let med = times.map(median)
            let tFull = med[0], tSmall = med[1]
            for i in 2..<runs.count {
                let c = runs[i].cache
                let stored = Double(c.stats.bytesStored) / Double(c.stats.tokensSeen * c.shape.fullBytesPerToken)
                let name = runs[i].name.padding(toLength: 21, withPad: " ", startingAt: 0)
                print(String(format: "%7d  %@ %8.3f  %8.3f  %8.3f   %7.3f   %.3f", T, name, med[i], tSmall, tFull,
                             (med[i] - tSmall) / (tFull - tSmall), stored))
            }
        }
    }
}
