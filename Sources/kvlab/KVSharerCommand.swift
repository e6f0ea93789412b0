import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVPolicies
import KVTokenizer

/// `kvlab calibrate`: offline calibrations; `loki` (the default) or `kvsharer`.
struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Offline calibrations: Loki's key PCA (default), a KVSharer layer-sharing map, head scores, SVD KV-head compression.",
        subcommands: [LokiCalibrateCommand.self, KVSharerCalibrateCommand.self, HeadsCalibrateCommand.self, SVDHeadsCalibrateCommand.self],
        defaultSubcommand: LokiCalibrateCommand.self)
}

/// `kvlab calibrate kvsharer`: KVSharer's strategy search, saved as a layer map.
struct KVSharerCalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvsharer",
        abstract: "Search a KVSharer cross-layer sharing map (layer -> source layer) and save it (JSON or HDF5).",
        discussion: """
        Runs the model densely over calibration text (default debian:licenses through the model's tokenizer; \
        --text, --ids-file or --random-tokens N), averages each layer's post-RoPE K and V over the \
        calibration sequences position by position, ranks layer pairs (i > j) by descending distance \
        (L2 over the head dimension, mean over KV heads and positions, K and V averaged), and \
        greedily accepts "layer i reuses layer j's cache" while the cosine similarity of the final \
        hidden states to the dense run stays above --threshold, up to --max-shared layers. Writes \
        the map, the threshold, the similarities and the ranking (.json: JSON; otherwise HDF5) and \
        prints them. Use the file with `policy: cla, map_file: FILE`.
        """)

    @OptionGroup var input: CalibrationOptions
    @Option(name: .customLong("max-tokens"), help: "Use at most this many tokens of the text or ids file.")
    var maxTokens: Int = 1024
    @Option(name: .customLong("sequence-length"), help: "Tokens per calibration sequence (each a fresh prefill from position 0).")
    var sequenceLength: Int = 128
    @Option(help: "Keep a pair while the final hidden states' cosine similarity to the dense model exceeds this.")
    var threshold: Double = 0.5
    @Option(name: .customLong("max-shared"), help: "Stop once this many layers share (default: a quarter of the layers).")
    var maxShared: Int?

    func validate() throws {
        try input.validate(minTokens: 1, maxTokens: maxTokens, sequenceLength: sequenceLength)
        guard threshold.isFinite && threshold <= 1 else { throw ValidationError("--threshold: expected a cosine similarity <= 1, got \(threshold)") }
        if let m = maxShared, m < 0 { throw ValidationError("--max-shared: expected >= 0, got \(m)") }
    }

    func run() throws {
        let (lm, calibration) = try input.load(maxTokens: maxTokens)
        let model = input.model, out = input.out
        let t0 = Date()
        let result = try KVSharerCalibrator.calibrate(model: lm, source: calibration.source, sequenceLength: sequenceLength,
                                                      threshold: threshold, maxShared: maxShared ?? lm.config.layers / 4,
                                                      modelLabel: model, provenance: calibration.provenance)
        try result.save(to: out)
        let tried = result.ranking.filter { $0.similarity != nil }.count
        note(String(format: "searched %d of %d pairs on %d tokens in %.1f s; wrote %@", tried, result.ranking.count,
                    result.tokens, Date().timeIntervalSince(t0), out))
        print("map (layer -> source): \(result.summary)")
        print(String(format: "shared %d of %d layers (max %d); similarity %.4f (threshold %.3f)", result.map.count, result.layers,
                     result.maxShared, result.similarity, result.threshold))
        print("rank  layer  source  distance  similarity  accepted")
        for (r, c) in result.ranking.enumerated() {
            let s = c.similarity.map { String(format: "%10.4f", $0) } ?? "         -"
            print(String(format: "%4d  %5d  %6d  %8.4f  %@  %@", r, c.layer, c.source, c.distance, s as NSString, c.accepted ? "yes" : ""))
        }
    }
}
