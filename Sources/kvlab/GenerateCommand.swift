import ArgumentParser
import Foundation
import KVCacheCore
import KVExperiments
import KVModel
import KVHDF5
import KVPolicies
import KVTokenizer

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate from a text prompt (or prompt ids), with the full cache or a policy stack.",
        discussion: """
        --prompt TEXT is encoded with the model's tokenizer (a folder's tokenizer.json or a .gguf \
        file's metadata; --tokenizer overrides), special tokens such as <|im_start|> included and \
        BOS added as the tokenizer says. Generation stops at the tokenizer's and the config's EOS \
        (--ignore-eos to go on) and the decoded text is printed on stdout; --show-ids adds the \
        prompt and output ids. With --prompt-ids the generated ids are printed (comma-separated) \
        and EOS does not stop generation.

        --policy SPEC uses a config's policy names and keys (docs/config.md): NAME or \
        NAME:key=value,... with one value per key; repeat it to build a stack (applied in order). \
        --retention-out F.h5 writes the original positions each layer and KV head kept after the \
        prompt (dataset 'retention', int32 [1, layers, kv_heads, max_kept], -1 padded: the layout \
        of a results file's retention maps) with the measured cache bytes as attributes. \
        Timings and the cache's measured bytes (stored, peak, read per decode step) go to stderr.

        Example (SmolLM2's chat format; bash reads \\n in $'...' as a newline):
          kvlab generate --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
            --prompt $'<|im_start|>user\\nHi!<|im_end|>\\n<|im_start|>assistant\\n' \\
            --policy snapkv:keep=0.25,window=16 --policy kivi:bits=4 \\
            --max-new-tokens 20 --retention-out kept.h5
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(help: ArgumentHelp(WeightPrecision.help))
    var weights: WeightPrecision = .stored
    @Option(help: "Prompt text, encoded with the model's tokenizer.")
    var prompt: String?
    @Option(name: .customLong("prompt-ids"), help: "Prompt token ids, comma-separated (e.g. 1,2,3).")
    var promptIds: String?
    @Option(help: "Tokenizer for --prompt: a tokenizer.json, a folder with one, or a .gguf file (default: the model's).")
    var tokenizer: String?
    @Option(name: .customLong("policy"), parsing: .singleValue,
            help: ArgumentHelp("A cache policy, e.g. snapkv:keep=0.25,window=32 (repeat for a stack; default: the full cache).", valueName: "spec"))
    var policies: [String] = []
    @Option(name: .customLong("max-new-tokens"), help: "Number of tokens to generate.")
    var maxNewTokens: Int = 16
    @Option(help: "Sampling temperature; 0 means greedy.")
    var temperature: Float = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (with --temperature > 0).")
    var topP: Float = 1
    @Option(help: "Seed for sampling.")
    var seed: UInt64 = 0
    @Flag(name: .customLong("show-ids"), help: "With --prompt: also print the prompt and output ids.")
    var showIds = false
    @Flag(name: .customLong("ignore-eos"), help: "With --prompt: do not stop at EOS.")
    var ignoreEOS = false
    @Option(name: .customLong("retention-out"), help: "Write the kept positions per layer and KV head after the prompt to this HDF5 file.")
    var retentionOut: String?
    @Option(name: .customLong("logits-out"), help: "Write the logits of every prompt position to this HDF5 file (dataset 'logits', float32, [prompt tokens, vocab]).")
    var logitsOut: String?
    @Option(name: .customLong("kv-dtype"), help: ArgumentHelp("Precision of the KV cache's float rows: f32, f16 or bf16 (keys and values rounded when stored; byte figures measured in it).", valueName: "dtype"))
    var kvDType: String = "f32"
    @Option(help: "BLAS and attention threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard (prompt == nil) != (promptIds == nil) else { throw ValidationError("give exactly one of --prompt TEXT or --prompt-ids 1,2,3") }
        if prompt == "" { throw ValidationError("--prompt: the text is empty") }
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens: expected >= 0, got \(maxNewTokens)") }
        guard temperature >= 0 else { throw ValidationError("--temperature: expected >= 0, got \(temperature)") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p: expected a value in (0, 1], got \(topP)") }
        do { _ = try KVDType(parsing: kvDType) } catch { throw ValidationError("--kv-dtype: expected one of f32, f16, bf16, got '\(kvDType)'") }
    }

    func run() throws {
        let policy = try PolicyArgument.policy(policies)   // before loading the model: bad specs fail fast
        var tok: Tokenizer? = nil
        let ids: [Int]
        if let text = prompt {
            let source = tokenizer ?? (model.hasPrefix("synthetic:") ? nil : model)
            guard let path = source, let t = try TokenizerWorkLimit.check({ try Tokenizer.forModel(path: path) }) else {
                throw ValidationError("--prompt needs a tokenizer and \(model) has none: give --tokenizer, or use --prompt-ids")
            }
            tok = t
            ids = try t.encodeChecked(text, addSpecialTokens: true)
            guard !ids.isEmpty else { throw ValidationError("--prompt: the text encodes to no tokens") }
        } else {
            ids = try parseIds(promptIds!, field: "--prompt-ids")
        }
        let lm = try loadModel(model, threads: threads, weights: weights)
        lm.kvDType = try KVDType(parsing: kvDType)
        if let bad = ids.first(where: { $0 >= lm.config.vocabSize }) {
            throw ValidationError("prompt token \(bad) is outside the model's vocabulary (size \(lm.config.vocabSize))")
        }
        var eos: Set<Int> = []
        if let t = tok, !ignoreEOS { eos = Set(lm.config.eosTokenIds + [t.eosTokenId].compactMap { $0 }) }
        let sampling: Sampling = temperature > 0 ? .sample(temperature: temperature, topP: topP, seed: seed) : .greedy
        let run = try PromptRun.run(model: lm, prompt: ids, policy: policy, maxNewTokens: maxNewTokens,
                                    sampling: sampling, stopAt: eos, allPromptLogits: logitsOut != nil,
                                    vocabulary: tok.map { t in TokenVocabulary(size: lm.config.vocabSize) { t.decode([$0], skipSpecialTokens: true) } })
        let r = run.generation
        if let bad = r.nonFinite {
            // No ids from NaN logits (their argmax is 0), no logits file: the model is broken.
            throw GenerationFailure(message: "\(model): \(bad.localizedDescription); nothing generated")
        }
        if let t = tok {
            print(t.decode(r.tokens, skipSpecialTokens: true))
            if showIds {
                print("prompt ids: " + ids.map(String.init).joined(separator: ","))
                print("output ids: " + r.tokens.map(String.init).joined(separator: ","))
            }
        } else {
            print(r.tokens.map(String.init).joined(separator: ","))
        }
        let decodeRate = r.tokens.count > 1 ? Double(r.tokens.count - 1) / r.decodeSeconds : 0
        note(String(format: "policy %@; KV cache %@; prefill %d tokens in %.3f s; decode %d tokens at %.1f tok/s",
                    policy.label, lm.kvDType.rawValue, ids.count, r.prefillSeconds, r.tokens.count, decodeRate))
        let kept = run.retained.flatMap { $0.map(\.count) }
        note(String(format: "KV cache (measured): stored %@ (peak %@), read %@/decode step; %d tokens seen, %.1f kept per layer and KV head after the prompt",
                    formatBytes(r.stats.bytesStored), formatBytes(r.stats.peakBytesStored),
                    formatBytes(Int(r.stats.meanDecodeBytesRead)), r.stats.tokensSeen,
                    kept.isEmpty ? 0 : Double(kept.reduce(0, +)) / Double(kept.count)))
        if let path = retentionOut {
            try run.writeRetention(to: path, model: model)
            note("wrote \(path)")
        }
        if let path = logitsOut {
            try H5File.writeAtomically(to: path) { f in
                let ds = try f.root.write("logits", floats: r.promptLogits, shape: [ids.count, lm.config.vocabSize])
                try ds.setAttribute("model", model)
                try f.root.write("prompt_ids", int64s: ids.map(Int64.init), shape: [ids.count])
                try f.root.setAttribute("kvlab_version", KVLabInfo.version)
            }
            note("wrote \(path)")
        }
    }
}

/// A generation that produced no valid output (exit status 1, one line on stderr).
struct GenerationFailure: LocalizedError { var message: String; var errorDescription: String? { message } }
