import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVPolicies
import KVTokenizer

/// `kvlab calibrate [loki]`: Loki's offline PCA of the post-RoPE keys, saved to HDF5.
struct LokiCalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: Loki.Config.descriptor.name,
        abstract: "Fit Loki's per-layer, per-KV-head PCA of the post-RoPE keys and save it to HDF5.",
        discussion: """
        Runs the model densely over calibration text (default debian:licenses, encoded with the model's \
        tokenizer; --text debian:kjv or a file; --ids-file; --random-tokens N for seeded random ids, e.g. \
        for synthetic models without a tokenizer), fits the principal axes of each (layer, KV head)'s \
        keys and writes bases [L, Hkv, d, d], means, explained variance and ratios [L, Hkv, d] (float32), \
        with the calibration source and the text's sha256 as attributes. Prints, per layer, the rank \
        that explains 90% of the variance (mean over heads). Use the file with `policy: loki, calibration: FILE`.
        """)

    @OptionGroup var input: CalibrationOptions
    @Option(name: .customLong("max-tokens"), help: "Use at most this many tokens of the text or ids file.")
    var maxTokens: Int = 4096
    @Option(name: .customLong("sequence-length"), help: "Tokens per calibration sequence (each a fresh prefill from position 0).")
    var sequenceLength: Int = 2048

    func validate() throws { try input.validate(minTokens: 2, maxTokens: maxTokens, sequenceLength: sequenceLength) }

    func run() throws {
        let (lm, calibration) = try input.load(maxTokens: maxTokens)
        let model = input.model, out = input.out
        let t0 = Date()
        let cal = try LokiCalibrator.calibrate(model: lm, source: calibration.source, sequenceLength: sequenceLength, modelLabel: model,
                                               provenance: calibration.provenance)
        try cal.save(to: out)
        note(String(format: "fitted on %d keys per (layer, KV head) from %@ in %.1f s; wrote %@", cal.tokens,
                    (cal.attributes["token_source"] ?? "?") as NSString, Date().timeIntervalSince(t0), out))
        print("layer  rank@90% (mean over \(cal.kvHeads) heads, of d=\(cal.headDim))  reference rank@0.9 (max over heads)")
        for l in 0..<cal.layers {
            let ranks = (0..<cal.kvHeads).map { cal.rankReaching(0.9, layer: l, head: $0) }
            let mean = Double(ranks.reduce(0, +)) / Double(ranks.count)
            print(String(format: "%5d  %8.1f  (%@)  %d", l, mean, ranks.map(String.init).joined(separator: ",") as NSString,
                         cal.referenceRank(0.9, layer: l)))
        }
    }
}

/// The options both `kvlab calibrate` subcommands share: the model, the output and the calibration
/// input (CalibrationTokens.swift).
struct CalibrationOptions: ParsableArguments {
    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(help: "Output file: HDF5 (loki), or .json / .h5 (kvsharer).")
    var out: String
    @Option(help: "BLAS threads (default: all cores).")
    var threads: Int?
    @Option(name: [.customLong("text"), .customLong("text-file")],
            help: "Calibration text: debian:licenses (default), debian:kjv or a UTF-8 file, encoded with the model's tokenizer.")
    var text: String?
    @Option(help: "Tokenizer for the text: a tokenizer.json, a folder with one, or a .gguf file (default: the model's own).")
    var tokenizer: String?
    @Option(name: .customLong("ids-file"), help: "Calibration token ids (separated by commas or whitespace) instead of text.")
    var idsFile: String?
    @Option(name: .customLong("random-tokens"), help: "N seeded random token ids instead of text (synthetic models without a tokenizer).")
    var randomTokens: Int?
    @Option(help: "Seed of --random-tokens.")
    var seed: UInt64 = 0

    /// At most one input; at least `minTokens` of them; a positive sequence length.
    func validate(minTokens: Int, maxTokens: Int, sequenceLength: Int) throws {
        let given = [text.map { _ in "--text" }, idsFile.map { _ in "--ids-file" }, randomTokens.map { _ in "--random-tokens" }].compactMap { $0 }
        if given.count > 1 { throw ValidationError("give at most one of --text, --ids-file, --random-tokens (got \(given.joined(separator: ", ")))") }
        if let n = randomTokens, n < minTokens { throw ValidationError("--random-tokens: expected >= \(minTokens), got \(n)") }
        guard maxTokens >= minTokens else { throw ValidationError("--max-tokens: expected >= \(minTokens), got \(maxTokens)") }
        guard sequenceLength >= 1 else { throw ValidationError("--sequence-length: expected >= 1, got \(sequenceLength)") }
    }

    /// The model and the calibration tokens (at most `maxTokens`).
    func load(maxTokens: Int) throws -> (LlamaModel, CalibrationInput) {
        let lm = try loadModel(model, threads: threads)
        return (lm, try calibrationInput(model: model, text: text ?? "debian:licenses", tokenizer: tokenizer, idsFile: idsFile,
                                         randomTokens: randomTokens, seed: seed, maxTokens: maxTokens))
    }
}
