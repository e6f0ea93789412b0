import Foundation
import KVGGUF
import KVTensor

/// A GGUF model file (llama.cpp's format): the config from its metadata (GGUFConfig.swift) and
/// its tensors, mapped to the Hugging Face names `ModelWeights.assemble` reads, shape-checked
/// against the config, dequantized to Float32 and, for `llama` files, with llama.cpp's Q/K row
/// permutation undone.
///
/// The permutation: llama.cpp runs Llama with interleaved RoPE (pairs 2i, 2i+1), so its converter
/// (convert_hf_to_gguf.py `LlamaModel.permute`) reorders the rows of each head of q_proj (and
/// k_proj, per KV head; biases too) from HF's rotate-half order: GGUF row 2i + j of a head is HF
/// row j * d/2 + i (i < d/2, j in 0, 1). KVLab's decoder rotates halves like transformers, so the
/// loader applies the inverse, as transformers' `LlamaTensorProcessor` does. `qwen2` files are
/// written without the permutation (llama.cpp runs Qwen2 with NeoX-style RoPE), so nothing is undone.
public struct GGUFCheckpoint {
    public let path: String
    public let file: GGUFFile
    public let config: ModelConfig
    /// `general.architecture` (llama or qwen2).
    public let architecture: String
    /// Things the loader chose to ignore, shown by `kvlab inspect`.
    public let notes: [String]

    /// Tensors the decoder does not use but that are known to be harmless.
    static let ignoredTensors: Set<String> = ["rope_freqs.weight"]

    public init(path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw ModelError.fileNotFound(path) }
        guard !isDir.boolValue else { throw ModelError.unreadable(file: path, reason: "expected a .gguf file, found a folder") }
        self.path = path
        file = try GGUFFile(path: path)
        config = try ModelConfig.fromGGUF(file)
        architecture = file["general.architecture"]?.string ?? ""
        var notes: [String] = []
        if file.tensor("rope_freqs.weight") != nil {
            // transformers' GGUF loader maps no parameter to rope_freqs and builds plain RoPE from
            // rope.freq_base; KVLab matches it (llama.cpp would divide each frequency by the factor).
            notes.append("rope_freqs.weight (Llama 3 per-frequency RoPE factors) ignored, as transformers' GGUF loader does")
        }
        self.notes = notes
        try checkTensors()
    }

    /// The GGUF name of an HF tensor name.
    static func ggufName(_ hf: String) -> String? {
        let fixed = ["model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                     "lm_head.weight": "output.weight"]
        if let n = fixed[hf] { return n }
        let prefix = "model.layers."
        guard hf.hasPrefix(prefix) else { return nil }
        let rest = hf.dropFirst(prefix.count)
        guard let dot = rest.firstIndex(of: "."), let layer = Int(rest[..<dot]) else { return nil }
        let part = String(rest[rest.index(after: dot)...])
        let parts = ["input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
                     "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                     "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                     "mlp.down_proj": "ffn_down"]
        for suffix in [".weight", ".bias"] where part.hasSuffix(suffix) {
            guard let g = parts[String(part.dropLast(suffix.count))] else { return nil }
            return "blk.\(layer).\(g)\(suffix)"
        }
        return nil
    }

    /// Every expected tensor exists with the shape the metadata implies; no unknown tensor is present.
    func checkTensors() throws {
        let expected = ModelWeights.expectedTensors(config)
        var used = Set<String>()
        for (hf, shape) in expected {
            let g = Self.ggufName(hf)!
            used.insert(g)
            guard let info = file.tensor(g) else {
                throw GGUFError(file: path, "tensor '\(g)' (\(hf)) is missing; the metadata (\(architecture), " +
                                "\(config.layers) layers) needs it")
            }
            guard info.shape == shape else {
                throw GGUFError(file: path, "tensor '\(g)' (\(hf)) has shape \(info.shape) but the metadata implies \(shape)")
            }
            guard info.type.isSupported else {
                throw GGUFError(file: path, "tensor '\(g)' has type \(info.type.name), which KVLab cannot dequantize " +
                    "(supported: \(GGMLType.supported.map(\.name).joined(separator: ", ")))")
            }
        }
        let extra = file.tensors.map(\.name).filter { !used.contains($0) && !Self.ignoredTensors.contains($0) }
        if !extra.isEmpty {
            throw GGUFError(file: path, "unexpected tensors for a \(config.layers)-layer \(architecture) model: " +
                            extra.prefix(5).map { "'\($0)'" }.joined(separator: ", ") + (extra.count > 5 ? " and \(extra.count - 5) more" : "") +
                            " (another architecture, or block_count disagrees with the tensors)")
        }
    }

    /// Tensor counts per ggml type, most common first.
    public var typeCounts: [(type: GGMLType, count: Int)] {
        var c: [GGMLType: Int] = [:]
        for t in file.tensors { c[t.type, default: 0] += 1 }
        return c.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key.rawValue < $1.key.rawValue }.map { ($0.key, $0.value) }
    }

    /// "Q4_1 x 210, F32 x 61, Q8_0 x 1": tensor counts per type.
    public var typeSummary: String { typeCounts.map { "\($0.type.name) x \($0.count)" }.joined(separator: ", ") }

    /// One line about the container, for `kvlab inspect`.
    public var fileSummary: String {
        "GGUF v\(file.version), architecture \(architecture), \(file.tensors.count) tensors, \(file.metadata.count) metadata keys, \(file.fileSize) bytes"
    }

    /// The config as JSON (sorted keys), the identity recorded in results.
    public var configJSON: String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return (try? enc.encode(config)).flatMap { String(data: $0, encoding: .utf8) } ?? ""
    }

    /// Dequantizes every weight to Float32 (HF layout, Q/K un-permuted for llama files), then
    /// scans them for NaN and infinity as the safetensors loader does (a NaN in a value or in a
    /// block's scale is an error naming the GGUF tensor, not a model that prints token 0).
    public func loadWeights() throws -> ModelWeights {
        let permuted = architecture == "llama"
        let weights = try ModelWeights.assemble(config) { hf in
            let g = Self.ggufName(hf)!
            var w = try file.floats(file.tensor(g)!)
            if permuted && (g.hasSuffix("attn_q.weight") || g.hasSuffix("attn_q.bias")) {
                w = Self.unpermute(w, heads: config.heads, headDim: config.headDim)
            } else if permuted && (g.hasSuffix("attn_k.weight") || g.hasSuffix("attn_k.bias")) {
                w = Self.unpermute(w, heads: config.kvHeads, headDim: config.headDim)
            }
            return w
        }
        if let bad = weights.firstNonFinite() {
            // The index is in the dequantized tensor, in HF's layout (rows un-permuted for llama Q/K).
            let name = Self.ggufName(bad.tensor).map { "'\($0)' (\(bad.tensor))" } ?? "'\(bad.tensor)'"
            throw GGUFError(file: path, ModelWeights.nonFiniteMessage(bad, name: name))
        }
        return weights
    }

    /// Inverse of llama.cpp's `LlamaModel.permute` on w [heads * d, cols] (cols = 1 for a bias):
    /// HF row h*d + j*d/2 + i is GGUF row h*d + 2i + j (i < d/2, j in 0, 1).
    static func unpermute(_ w: [Float], heads: Int, headDim d: Int) -> [Float] {
        let cols = w.count / (heads * d)
        precondition(cols * heads * d == w.count && d % 2 == 0, "unpermute: \(w.count) values are not \(heads) heads of \(d) rows")
        var out = [Float](repeating: 0, count: w.count)
        w.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for h in 0..<heads {
                    for i in 0..<(d / 2) {
                        for j in 0..<2 {
                            let from = (h * d + 2 * i + j) * cols, to = (h * d + j * d / 2 + i) * cols
                            (dst.baseAddress! + to).update(from: src.baseAddress! + from, count: cols)
                        }
                    }
                }
            }
        }
        return out
    }
}

extension LlamaModel {
    /// Loads a GGUF model file (weights dequantized to Float32).
    public convenience init(gguf path: String) throws {
        let g = try GGUFCheckpoint(path: path)
        self.init(config: g.config, weights: try g.loadWeights())
    }
}
