import ArgumentParser
import Foundation
import KVModel
import KVHDF5

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate token ids from prompt ids with the full KV cache.",
        discussion: "Prints the generated ids (comma-separated) on stdout; timings and measured cache bytes go to stderr.")

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String
    @Option(name: .customLong("prompt-ids"), help: "Prompt token ids, comma-separated (e.g. 1,2,3).")
    var promptIds: String
    @Option(name: .customLong("max-new-tokens"), help: "Number of tokens to generate.")
    var maxNewTokens: Int = 16
    @Option(help: "Sampling temperature; 0 means greedy.")
    var temperature: Float = 0
    @Option(name: .customLong("top-p"), help: "Nucleus sampling mass (with --temperature > 0).")
    var topP: Float = 1
    @Option(help: "Seed for sampling.")
    var seed: UInt64 = 0
    @Option(name: .customLong("logits-out"), help: "Write the logits of every prompt position to this HDF5 file (dataset 'logits', float32, [prompt tokens, vocab]).")
    var logitsOut: String?
    @Option(help: "BLAS and attention threads (default: all cores).")
    var threads: Int?

    func validate() throws {
        guard maxNewTokens >= 0 else { throw ValidationError("--max-new-tokens: expected >= 0, got \(maxNewTokens)") }
        guard temperature >= 0 else { throw ValidationError("--temperature: expected >= 0, got \(temperature)") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p: expected a value in (0, 1], got \(topP)") }
    }

    func run() throws {
        let prompt = try parseIds(promptIds, field: "--prompt-ids")
        let lm = try loadModel(model, threads: threads)
        if let bad = prompt.first(where: { $0 >= lm.config.vocabSize }) {
            throw ValidationError("--prompt-ids: token \(bad) is outside the vocabulary (size \(lm.config.vocabSize))")
        }
        let sampling: Sampling = temperature > 0 ? .sample(temperature: temperature, topP: topP, seed: seed) : .greedy
        let r = lm.generate(prompt: prompt, maxNewTokens: maxNewTokens, sampling: sampling,
                            allPromptLogits: logitsOut != nil)
        if let bad = r.nonFinite {
            // No ids from NaN logits (their argmax is 0), no logits file: the model is broken.
            throw GenerationFailure(message: "\(model): \(bad.localizedDescription); nothing generated")
        }
        print(r.tokens.map(String.init).joined(separator: ","))
        let decodeRate = r.tokens.count > 1 ? Double(r.tokens.count - 1) / r.decodeSeconds : 0
        note(String(format: "prefill %d tokens in %.3f s; decode %d tokens at %.1f tok/s; KV stored %@ (peak %@), read %@/step",
                    prompt.count, r.prefillSeconds, r.tokens.count, decodeRate, formatBytes(r.stats.bytesStored),
                    formatBytes(r.stats.peakBytesStored), formatBytes(Int(r.stats.meanDecodeBytesRead))))
        if let path = logitsOut {
            try H5File.writeAtomically(to: path) { f in
                let ds = try f.root.write("logits", floats: r.promptLogits, shape: [prompt.count, lm.config.vocabSize])
                try ds.setAttribute("model", model)
                try f.root.write("prompt_ids", int64s: prompt.map(Int64.init), shape: [prompt.count])
                try f.root.setAttribute("kvlab_version", KVLabVersion.string)
            }
            note("wrote \(path)")
        }
    }
}

/// A generation that produced no valid output (exit status 1, one line on stderr).
struct GenerationFailure: LocalizedError { var message: String; var errorDescription: String? { message } }
