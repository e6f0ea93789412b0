import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVPolicies

/// `kvlab calibrate heads`: retrieval scores (Wu et al., arXiv 2404.15574, reference
/// nightdessert/Retrieval_Head) and long-context scores (arXiv 2502.09647) per layer and query head.
struct HeadsCalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heads",
        abstract: "Score every query head: retrieval score (needle copying) and long-context score; write HDF5.",
        discussion: """
        Hides needles in a haystack of real text (the needle task at each --contexts length and --depths \
        depths), prefills all but the prompt's last token and greedy-decodes the answer. At each step a head \
        scores 1/|answer tokens| when its top-1 attention is on a needle-answer token equal to the token \
        generated (a copy); per prompt the sum is its retrieval score, averaged over the prompts whose \
        response recalls more than half of the answer (ROUGE-1), as the reference does. Heads above 0.1 are \
        retrieval heads. The same decode queries give the long-context scores: the exact attention mass \
        outside the first --lc-sinks and last --lc-window keys, and its second-moment (Gaussian) estimate \
        from the local keys' or the distant keys' moments (docs/heads.md). Plot with \
        `python3 experiments/plot_heads.py FILE`. Use the file with a task's `ablate_heads: top:K`.
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(help: "Output HDF5 file.")
    var out: String
    @Option(help: "Haystack: debian:kjv, debian:licenses, a UTF-8 file, or 'filler' (the style's filler sentences). Default: debian:kjv for English models, filler for a model with its own prompt style.")
    var text: String?
    @Option(help: "Context lengths in tokens, comma-separated.")
    var contexts: String = "1000,2000"
    @Option(help: "Needle depths per context (linspace(0, 1, N)).")
    var depths: Int = 10
    @Option(help: "Needles: 'all' (the style's own needle and KVLab's built-in ones, English styles) or 'style' (the style's only).")
    var needles: String = "all"
    @Option(help: "Seed of the task samples.")
    var seed: UInt64 = 0
    @Option(name: .customLong("max-new-tokens"), help: "Greedy tokens per prompt at most (the reference: 50).")
    var maxNewTokens: Int = 50
    @Option(name: .customLong("lc-sinks"), help: "Long-context score: first tokens counted as local.")
    var lcSinks: Int = 4
    @Option(name: .customLong("lc-window"), help: "Long-context score: last tokens counted as local.")
    var lcWindow: Int = 64
    @Option(name: .customLong("lc-threshold"), help: "Long-context score: a query is long-context when its bulk mass is at least this.")
    var lcThreshold: Double = 0.5
    @Option(help: "BLAS threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard depths >= 1 else { throw ValidationError("--depths: expected >= 1, got \(depths)") }
        guard ["all", "style"].contains(needles) else { throw ValidationError("--needles: expected all or style, got '\(needles)'") }
        guard maxNewTokens >= 1 else { throw ValidationError("--max-new-tokens: expected >= 1, got \(maxNewTokens)") }
        guard lcSinks >= 0, lcWindow >= 1 else { throw ValidationError("--lc-sinks >= 0 and --lc-window >= 1 expected") }
        guard lcThreshold > 0 && lcThreshold < 1 else { throw ValidationError("--lc-threshold: expected a fraction in (0, 1), got \(lcThreshold)") }
        _ = try parseIds(contexts, field: "--contexts")
    }

    func run() throws {
        let lm = try loadModel(model, threads: threads)
        guard let (codec, style) = try ModelText.textSetup(for: model) else {
            throw ValidationError("\(model) has no tokenizer; head detection hides needles in text and needs the model's tokenizer")
        }
        var o = HeadDetectionOptions()
        o.contexts = try parseIds(contexts, field: "--contexts")
        o.depths = depths
        o.seed = seed
        o.maxNewTokens = maxNewTokens
        let haystack = text ?? (style.name == "standard" ? "debian:kjv" : "filler")
        o.textFile = haystack == "filler" ? nil : haystack
        if needles == "style" {
            o.needles = [DetectionNeedle(needle: style.needle, question: style.needleQuestion,
                                         answerPrefix: style.needleAnswerPrefix, answer: style.needleAnswer)]
        }
        o.longContext = LongContextStats.Options(sinks: lcSinks, window: lcWindow, threshold: lcThreshold)
        let t0 = Date()
        let result = try RetrievalHeadDetector.detect(
            model: lm, codec: codec, style: style, options: o,
            attributes: ["model": model, "model_sha256": try ModelText.fingerprint(model), "kvlab_version": KVLabInfo.version,
                         "created": ISO8601DateFormatter().string(from: Date()), "prompt_style": style.name,
                         "haystack_sha256": try o.textFile.map { try ModelText.tokens($0, codec: codec).sha256 } ?? "filler",
                         "reference": "nightdessert/Retrieval_Head retrieval_head_detection.py; arXiv 2404.15574; arXiv 2502.09647"],
            progress: note)
        try result.save(to: out)
        note(String(format: "scored %d prompts in %.1f s; wrote %@", result.prompts.count, Date().timeIntervalSince(t0), out))
        result.summary().forEach { print($0) }
    }
}

/// `kvlab calibrate svd-heads`: fit the low-rank KV-head projection of "Effectively Compress KV Heads
/// for LLM" (arXiv 2406.07056) on real text; use it with `policy: svd_heads, calibration: FILE`.
struct SVDHeadsCalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "svd-heads",
        abstract: "Fit an SVD KV-head compression (fewer KV heads) on calibration text; write HDF5 for policy svd_heads.",
        discussion: """
        Runs dense prefills of --sequence-length tokens of real text (--text, default debian:licenses, through \
        the model's tokenizer; or --tokens seeded random ids for a synthetic model) and fits, per layer and \
        group of adjacent KV heads, the values' top principal directions and the keys' RoPE-commuting \
        per-frequency projection (docs/heads.md). Prints the reconstruction errors of the fit and of mean \
        pooling (policy head_pooling) on the same tokens.
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(help: "Output HDF5 file.")
    var out: String
    @Option(name: .customLong("kv-heads"), help: "KV heads to store (a divisor of the model's).")
    var kvHeads: Int
    @Option(help: "Calibration text: debian:licenses, debian:kjv or a UTF-8 file (needs the model's tokenizer).")
    var text: String = "debian:licenses"
    @Option(help: "Seeded random calibration tokens instead of text (synthetic models); 0 = use --text.")
    var tokens: Int = 0
    @Option(help: "Seed of the random tokens.")
    var seed: UInt64 = 0
    @Option(name: .customLong("sequence-length"), help: "Tokens per calibration sequence (each a fresh prefill from position 0).")
    var sequenceLength: Int = 2048
    @Option(help: "Number of sequences of text (consecutive slices).")
    var sequences: Int = 4
    @Option(help: "BLAS threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard kvHeads >= 1 else { throw ValidationError("--kv-heads: expected >= 1, got \(kvHeads)") }
        guard sequenceLength >= 2, sequences >= 1, tokens >= 0 else { throw ValidationError("--sequence-length >= 2, --sequences >= 1, --tokens >= 0 expected") }
    }

    func run() throws {
        let lm = try loadModel(model, threads: threads)
        let source: LokiCalibrator.Source
        var attrs = ["model": model, "model_sha256": try ModelText.fingerprint(model), "kvlab_version": KVLabInfo.version,
                     "reference": "Yu et al., Effectively Compress KV Heads for LLM, arXiv 2406.07056 (no public code)"]
        if tokens > 0 {
            source = .random(count: tokens, seed: seed)
        } else {
            guard let (codec, _) = try ModelText.textSetup(for: model) else {
                throw ValidationError("\(model) has no tokenizer; give --tokens N for seeded random calibration tokens")
            }
            let (ids, label, sha) = try ModelText.tokens(text, codec: codec)
            let need = sequences * sequenceLength
            guard ids.count >= need else {
                throw ValidationError("\(text) gives \(ids.count) tokens; \(sequences) x \(sequenceLength) need \(need) (lower --sequences or --sequence-length)")
            }
            source = .tokens(Array(ids.prefix(need)), label: label)
            attrs["text_sha256"] = sha
        }
        let t0 = Date()
        let cal = try SVDHeadsCalibrator.calibrate(model: lm, storedKVHeads: kvHeads, source: source, sequenceLength: sequenceLength,
                                                   attributes: attrs)
        try cal.save(to: out)
        note(String(format: "fitted on %d tokens in %.1f s; wrote %@", cal.tokens, Date().timeIntervalSince(t0), out))
        print("layer  value_err(svd)  value_err(mean)  key_err(svd)  key_err(mean)   (relative, mean over stored heads)")
        let hs = cal.storedKVHeads
        func mean(_ x: [Float], _ l: Int) -> Float { (0..<hs).map { x[l * hs + $0] }.reduce(0, +) / Float(hs) }
        for l in 0..<cal.layers {
            print(String(format: "%5d  %14.4f  %15.4f  %12.4f  %13.4f", l, mean(cal.valueError, l), mean(cal.valueErrorMean, l),
                         mean(cal.keyError, l), mean(cal.keyErrorMean, l)))
        }
    }
}
