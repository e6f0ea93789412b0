import ArgumentParser
import Foundation
import KVCacheCore
import KVModel
import KVTensor

/// The cost of the NaN/inf checks (`forwardChecked` vs `forward`) on the decoder benchmark's
/// workloads, measured interleaved so that a shared machine's noise hits both alike: prefills
/// alternate checked/unchecked on fresh caches; decode steps alternate on one cache (step i
/// checked, step i+1 not, the order swapped every pair).
struct FiniteCheckBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "finite-checks",
        abstract: "Cost of the NaN/inf checks of hidden states and logits, interleaved with unchecked passes.",
        discussion: "Build with -c release. docs/robustness.md has the figures.")

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String = "synthetic:smollm2-135m"
    @Option(help: "Prompt length of the prefill measurement.")
    var prefill: Int = 512
    @Option(name: .customLong("prefill-rounds"), help: "Prefills of each kind (alternating).")
    var prefillRounds: Int = 16
    @Option(name: .customLong("decode-contexts"), help: "Contexts (comma-separated) of the decode measurement.")
    var decodeContexts: String = "512,2048"
    @Option(name: .customLong("decode-steps"), help: "Decode steps per context (half of them checked).")
    var decodeSteps: Int = 256
    @Option(help: "BLAS and attention threads.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    func run() throws {
        let lm = try loadModel(model, threads: threads)
        let V = lm.config.vocabSize
        var rng = SeededRandom(seed: 1234)
        func tokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(rng.next() % UInt64(V)) } }
        // Process CPU time (all BLAS threads) as well as wall time: on a shared machine the wall
        // clock also measures who else ran.
        func cpu() -> Double {
            var t = timespec()
            clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
            return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
        }
        func pass(_ checked: Bool, _ t: [Int], _ at: Int, _ cache: KVCache, _ phase: Phase) throws -> (wall: Double, cpu: Double) {
            let c0 = cpu()
            let wall = try clock {
                if checked { _ = try lm.forwardChecked(t, startPosition: at, cache: cache, phase: phase) }
                else { _ = lm.forward(t, startPosition: at, cache: cache, phase: phase) }
            }
            return (wall, cpu() - c0)
        }
        // Cost = median over adjacent (checked, unchecked) pairs of checked/unchecked - 1, with a
        // 95% percentile-bootstrap interval of that median (2,000 resamples, seeded).
        func report(_ name: String, _ on: [(wall: Double, cpu: Double)], _ off: [(wall: Double, cpu: Double)]) {
            for (kind, get) in [("wall", { (x: (wall: Double, cpu: Double)) in x.wall }), ("cpu ", { (x: (wall: Double, cpu: Double)) in x.cpu })] {
                let a = on.map(get), b = off.map(get)
                let ratios = zip(a, b).map { $0 / $1 }
                var boot = SeededRandom(seed: 7)
                let medians = (0..<2000).map { _ in median((0..<ratios.count).map { _ in ratios[Int(boot.next() % UInt64(ratios.count))] }) }.sorted()
                let lo = medians[50], hi = medians[1949]
                print(String(format: "%-22@ %@ checks on %9.3f ms   off %9.3f ms   cost %+6.2f%% [95%% CI %+6.2f%%, %+6.2f%%]   (%d pairs)",
                             name, kind, median(a) * 1000, median(b) * 1000, (median(ratios) - 1) * 100, (lo - 1) * 100, (hi - 1) * 100, ratios.count))
            }
        }
        print("model \(model), \(threads) threads")
        let prompt = tokens(prefill)
        var on: [(wall: Double, cpu: Double)] = [], off: [(wall: Double, cpu: Double)] = []
        for r in 0..<(2 * prefillRounds) {
            let checked = (r % 2 == 0) != (r / 2 % 2 == 1)   // on off, off on, on off, ...
            let t = try pass(checked, prompt, 0, lm.makeCache(initialCapacity: prefill), .prefill)
            if checked { on.append(t) } else { off.append(t) }
        }
        report("prefill \(prefill) tokens", on, off)
        for ctx in try parseIds(decodeContexts, field: "--decode-contexts") {
            let cache = lm.makeCache(initialCapacity: ctx + decodeSteps)
            _ = lm.forward(tokens(ctx), startPosition: 0, cache: cache, phase: .prefill)
            on = []; off = []
            for (i, t) in tokens(decodeSteps).enumerated() {
                let checked = (i % 2 == 0) != (i / 2 % 2 == 1)
                let s = try pass(checked, [t], ctx + i, cache, .decode)
                if checked { on.append(s) } else { off.append(s) }
            }
            report("decode step at \(ctx)", on, off)
        }
        // What the checks read per decode step, timed alone: the residual after each layer and the logits.
        let c = lm.config
        let scanned = [Float](repeating: 1, count: c.layers * c.hiddenSize + V)
        var found = 0
        let scan = median((0..<50).map { _ in clock { scanned.withUnsafeBufferPointer { if Ops.firstNonFinite($0.baseAddress!, count: $0.count) != nil { found += 1 } } } })
        if found > 0 { print("unexpected: non-finite values found") }
        print(String(format: "the scan alone: %d floats per decode step in %.1f us", scanned.count, scan * 1e6))
    }
}
