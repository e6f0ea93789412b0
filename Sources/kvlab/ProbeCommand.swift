import ArgumentParser
import Foundation
import KVExperiments

/// `kvlab probe`: measures the premises of the compression families on a model and real text.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Measure each compression family's premise on a model: key rank, adjacent-layer similarity, attention sparsity.",
        discussion: """
        Runs dense prefills of --sequence-length tokens of real text (default debian:licenses, the license \
        texts of Debian's base-files, tokenized with the model's tokenizer) and writes an HDF5 file with:
          key_rank90 [L, Hkv]            principal directions explaining 90% of the post-RoPE key variance (Loki)
          key_variance_ratio [L, Hkv, d] explained-variance ratios
          layer_cos_k/v [L-1, Hkv]       mean per-token cosine between layer l and l+1 (MiniCache)
          attention_top_mass [L, H, F]   attention mass in the top 1/64..1/2 of visible keys, last --window rows (Quest, top-k)
          attention_quest_mass [L, H, F] mass on the pages Quest picks at the same token budgets (--page-size, kv_group)
          attention_page_oracle_mass [L, H, F]  mass on the best pages by true mass at those budgets (Quest's page bound vs pages)
        Plot it with `python3 experiments/plot_probes.py FILE`. See docs/probes.md.
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(help: "Output HDF5 file.")
    var out: String
    @Option(help: "Text: debian:licenses, debian:kjv or a UTF-8 file.")
    var text: String = "debian:licenses"
    @Option(name: .customLong("sequence-length"), help: "Tokens per prefill.")
    var sequenceLength: Int = 2048
    @Option(help: "Number of sequences (consecutive slices of the text).")
    var sequences: Int = 4
    @Option(help: "Last query rows of each sequence whose attention is measured.")
    var window: Int = 64
    @Option(name: .customLong("page-size"), help: "Quest's page size for the page-mass measures.")
    var pageSize: Int = 16
    @Option(help: "BLAS threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard sequenceLength > window, window >= 1 else { throw ValidationError("--sequence-length must exceed --window (>= 1)") }
        guard pageSize >= 1 else { throw ValidationError("--page-size: expected >= 1, got \(pageSize)") }
        guard sequences >= 1 else { throw ValidationError("--sequences: expected >= 1, got \(sequences)") }
    }

    func run() throws {
        let lm = try loadModel(model, threads: threads)
        guard let codec = try ModelText.codec(for: model) else {
            throw ValidationError("\(model) has no tokenizer; probes run on real text and need the model's tokenizer")
        }
        let (ids, label, sha) = try ModelText.tokens(text, codec: codec)
        let need = sequences * sequenceLength
        guard ids.count >= need else {
            throw ValidationError("\(text) gives \(ids.count) tokens; \(sequences) x \(sequenceLength) need \(need) (lower --sequences or --sequence-length)")
        }
        let t0 = Date()
        let result = try PremiseProbe.run(model: lm, tokens: Array(ids.prefix(need)), sequenceLength: sequenceLength, window: window,
                                          pageSize: pageSize, attributes: ["model": model, "text": label, "text_sha256": sha,
                                                       "created": ISO8601DateFormatter().string(from: Date())],
                                          progress: note)
        try result.save(to: out)
        note(String(format: "probed %d tokens in %.1f s; wrote %@", need, Date().timeIntervalSince(t0), out))
        result.summary().forEach { print($0) }
    }
}
