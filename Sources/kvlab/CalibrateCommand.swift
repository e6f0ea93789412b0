import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVPolicies
import KVTokenizer

/// `kvlab calibrate [loki]`: Loki's offline PCA of the post-RoPE keys, saved to HDF5.
struct LokiCalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loki",
        abstract: "Fit Loki's per-layer, per-KV-head PCA of the post-RoPE keys and save it to HDF5.",
        discussion: """
        Runs the model densely over calibration tokens (--text-file through the model's tokenizer, \
        --ids-file, or --tokens seeded random ids, e.g. for synthetic models), fits the principal axes \
        of each (layer, KV head)'s keys and writes bases [L, Hkv, d, d], means, explained variance \
        and ratios [L, Hkv, d] (float32). Prints, per layer, the rank that explains 90% of the \
        variance (mean over heads). Use the file with `policy: loki, calibration: FILE`.
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(help: "Output HDF5 file.")
    var out: String
    @Option(help: "Number of seeded random calibration tokens (when no file is given).")
    var tokens: Int = 4096
    @Option(help: "Seed of the random tokens.")
    var seed: UInt64 = 0
    @Option(name: .customLong("text-file"), help: "Calibration text, encoded with --tokenizer (default: the model's: a folder's tokenizer.json or a .gguf file's metadata).")
    var textFile: String?
    @Option(help: "Tokenizer for --text-file: a tokenizer.json, a folder with one, or a .gguf file.")
    var tokenizer: String?
    @Option(name: .customLong("ids-file"), help: "Calibration token ids (separated by commas or whitespace).")
    var idsFile: String?
    @Option(name: .customLong("max-tokens"), help: "Use at most this many tokens of a file.")
    var maxTokens: Int?
    @Option(name: .customLong("sequence-length"), help: "Tokens per calibration sequence (each a fresh prefill from position 0).")
    var sequenceLength: Int = 2048
    @Option(help: "BLAS threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        if textFile != nil && idsFile != nil { throw ValidationError("give at most one of --text-file and --ids-file") }
        guard tokens >= 2 else { throw ValidationError("--tokens: expected >= 2, got \(tokens)") }
        guard sequenceLength >= 1 else { throw ValidationError("--sequence-length: expected >= 1, got \(sequenceLength)") }
    }

    func run() throws {
        let lm = try loadModel(model, threads: threads)
        let source = try calibrationSource(model: model, tokens: tokens, seed: seed, textFile: textFile, tokenizer: tokenizer,
                                           idsFile: idsFile, maxTokens: maxTokens)
        let t0 = Date()
        let cal = try LokiCalibrator.calibrate(model: lm, source: source, sequenceLength: sequenceLength, modelLabel: model)
        try cal.save(to: out)
        note(String(format: "fitted on %d keys per (layer, KV head) in %.1f s; wrote %@", cal.tokens, Date().timeIntervalSince(t0), out))
        print("layer  rank@90% (mean over \(cal.kvHeads) heads, of d=\(cal.headDim))  reference rank@0.9 (max over heads)")
        for l in 0..<cal.layers {
            let ranks = (0..<cal.kvHeads).map { cal.rankReaching(0.9, layer: l, head: $0) }
            let mean = Double(ranks.reduce(0, +)) / Double(ranks.count)
            print(String(format: "%5d  %8.1f  (%@)  %d", l, mean, ranks.map(String.init).joined(separator: ",") as NSString,
                         cal.referenceRank(0.9, layer: l)))
        }
    }
}
