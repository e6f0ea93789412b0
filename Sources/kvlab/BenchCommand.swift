import ArgumentParser
import Foundation
import KVCacheCore
import KVModel
import KVTensor

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Release-mode benchmarks that print ratios measured side by side in one run.",
        subcommands: [DecoderBench.self, WeightsBench.self, EvictionBench.self, AttentionBench.self, KIVIBench.self, TokenizerBench.self, FiniteCheckBench.self])
}

/// Prefill and decode throughput of the decoder with the full cache, plus peak memory
/// against what the process can account for (weights + KV + activations + runtime baseline).
struct DecoderBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decoder",
        abstract: "Prefill tokens/s and decode tokens/s at given contexts (median of repeats).",
        discussion: "Build with -c release. scripts/bench/decoder_vs_pytorch.py runs this next to PyTorch on the same weights.")

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String = "synthetic:smollm2-135m"
    @Option(help: ArgumentHelp(WeightPrecision.help))
    var weights: WeightPrecision = .stored
    @Option(help: "Prompt length of the prefill measurement.")
    var prefill: Int = 512
    @Option(name: .customLong("decode-contexts"), help: "Contexts (comma-separated) at which decode speed is measured.")
    var decodeContexts: String = "512,4096"
    @Option(name: .customLong("decode-tokens"), help: "Decode steps timed per measurement.")
    var decodeTokens: Int = 32
    @Option(help: "Repeats; the median is reported.")
    var repeats: Int = 3
    @Flag(name: .customLong("prefill-once"),
          help: "Decode: prefill each context once and time the repeats as consecutive windows of --decode-tokens steps (contexts C, C+N, ...), instead of one prefill per repeat.")
    var prefillOnce = false
    @Option(help: "BLAS and attention threads.")
    var threads: Int = ProcessInfo.processInfo.activeProcessorCount
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false
    @Flag(name: .customLong("no-finite-checks"), help: "Skip the NaN/inf checks of hidden states and logits that runs and generate make (to measure their cost: scripts/robustness/finite_check_cost.sh).")
    var noFiniteChecks = false
    @Option(name: .customLong("kv-dtype"), help: "KV cache element type: f32, f16 or bf16 (llama.cpp's default cache is f16).")
    var kvDType: KVDType = .f32

    func run() throws {
        let contexts = try parseIds(decodeContexts, field: "--decode-contexts")
        let checks = !noFiniteChecks
        func step(_ lm: LlamaModel, _ tokens: [Int], _ position: Int, _ cache: KVCache, _ phase: Phase) throws {
            if checks { _ = try lm.forwardChecked(tokens, startPosition: position, cache: cache, phase: phase) }
            else { _ = lm.forward(tokens, startPosition: position, cache: cache, phase: phase) }
        }
        let baseline = MemoryProbe.residentBytes()
        var loaded: LlamaModel?
        let loadSeconds = try clock { loaded = try loadModel(model, threads: threads, weights: weights) }
        let lm = loaded!
        // The NaN/inf scan every checkpoint load makes (ModelWeights.checkFinite), timed alone.
        var nonFiniteWeights = 0
        let scanSeconds = median((0..<3).map { _ in clock { if lm.weights.firstNonFinite() != nil { nonFiniteWeights += 1 } } })
        if nonFiniteWeights > 0 { throw ValidationError("\(model): the weights hold non-finite values") }
        MemoryProbe.resetPeak()
        let V = lm.config.vocabSize
        var rng = SeededRandom(seed: 1234)
        func randomTokens(_ n: Int) -> [Int] { (0..<n).map { _ in Int(rng.next() % UInt64(V)) } }

        // Prefill: tokens/s over the whole prompt, logits for the last row.
        let prompt = randomTokens(prefill)
        var prefillTimes: [Double] = []
        var maxKVAllocated = 0
        for _ in 0..<repeats {
            let cache = KVCache(shape: lm.cacheShape, initialCapacity: prefill, kvDType: kvDType)
            let t = try clock { try step(lm, prompt, 0, cache, .prefill) }
            prefillTimes.append(t)
            maxKVAllocated = max(maxKVAllocated, cache.stats.bytesAllocated)
        }
        var decodeRates: [Int: Double] = [:]
        for ctx in contexts {
            let ctxTokens = randomTokens(ctx), steps = randomTokens(decodeTokens)
            var rates: [Double] = []
            var cache = KVCache(shape: lm.cacheShape, initialCapacity: ctx + decodeTokens * (prefillOnce ? repeats : 1), kvDType: kvDType)
            for r in 0..<repeats {
                let start = prefillOnce ? ctx + r * decodeTokens : ctx
                if !prefillOnce || r == 0 {
                    if r > 0 { cache = KVCache(shape: lm.cacheShape, initialCapacity: ctx + decodeTokens, kvDType: kvDType) }
                    try step(lm, ctxTokens, 0, cache, .prefill)
                }
                let t = try clock {
                    for (i, tok) in steps.enumerated() { try step(lm, [tok], start + i, cache, .decode) }
                }
                rates.append(Double(decodeTokens) / t)
                maxKVAllocated = max(maxKVAllocated, cache.stats.bytesAllocated)
            }
            decodeRates[ctx] = median(rates)
        }
        let peak = MemoryProbe.peakResidentBytes()
        let c = lm.config
        let chunk = min(lm.prefillChunk, max(prefill, contexts.max() ?? 0))
        // Workspace of a prefill chunk (activations + the dequantized tile of packed matrices),
        // attention scratch, and the logits row and its copy.
        let activations = lm.workspaceBytes(rows: chunk)
            + 4 * (Attention.queryBlock * (Attention.keyBlock + c.headDim) + c.vocabSize * 2)
        let weightBytes = lm.weights.byteCount
        let accounted = baseline + weightBytes + maxKVAllocated + activations
        let prefillRate = Double(prefill) / median(prefillTimes)
        if json {
            let decode = contexts.map { "\"\($0)\": \(decodeRates[$0]!)" }.joined(separator: ", ")
            print("{\"model\": \"\(model)\", \"weights\": \"\(weights.rawValue)\", \"weight_types\": \"\(lm.weights.storageSummary)\", " +
                  "\"finite_checks\": \(checks), \"kv_dtype\": \"\(kvDType.rawValue)\", \"threads\": \(threads), \"prefill_tokens\": \(prefill), \"prefill_tok_s\": \(prefillRate), " +
                  "\"decode_tok_s\": {\(decode)}, \"peak_rss_bytes\": \(peak), \"accounted_bytes\": \(accounted), " +
                  "\"weights_bytes\": \(weightBytes), \"kv_bytes\": \(maxKVAllocated), \"activation_bytes\": \(activations), " +
                  "\"baseline_rss_bytes\": \(baseline), \"load_s\": \(loadSeconds), \"weights_finite_scan_s\": \(scanSeconds)}")
        } else {
            print("model \(model), weights \(weights.rawValue) (\(lm.weights.storageSummary)), KV \(kvDType.rawValue), \(threads) threads, median of \(repeats), finite checks \(checks ? "on" : "off")")
            print(String(format: "load %.2f s; NaN/inf scan of the weights %.1f ms (%.1f GB/s)", loadSeconds, scanSeconds * 1000,
                         Double(weightBytes) / scanSeconds / 1e9))
            print(String(format: "prefill %5d tokens : %8.1f tok/s", prefill, prefillRate))
            for ctx in contexts { print(String(format: "decode at %6d     : %8.2f tok/s", ctx, decodeRates[ctx]!)) }
            print("peak RSS \(formatBytes(peak)) vs accounted \(formatBytes(accounted)) " +
                  "(weights \(formatBytes(weightBytes)) + KV \(formatBytes(maxKVAllocated)) + activations \(formatBytes(activations)) + runtime \(formatBytes(baseline))): " +
                  String(format: "ratio %.3f", Double(peak) / Double(accounted)))
        }
    }
}

/// Wall-clock seconds of a closure.
func clock(_ body: () throws -> Void) rethrows -> Double {
    let t0 = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
}

/// Resident-set figures of this process from /proc (Linux); zero elsewhere.
enum MemoryProbe {
    static func status(_ key: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
            let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
            return kb * 1024
        }
        return 0
    }
    static func residentBytes() -> Int { status("VmRSS") }
    static func peakResidentBytes() -> Int { status("VmHWM") }
    /// Resets the peak (VmHWM) to the current RSS, so loading does not count as running.
    static func resetPeak() { try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8) }
}
