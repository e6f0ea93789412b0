import Foundation
import KVGGUF
import KVTensor

/// How a GGUF file's metadata becomes a `ModelConfig` (llama.cpp's `llama_model::load_hparams`
/// for the keys, transformers' `integrations/ggml.py` GGUF_CONFIG_MAPPING for what they mean).
///
/// Read, with `A` = `general.architecture` (`llama` — Llama 2/3, SmolLM, and Mistral, which
/// llama.cpp writes as `llama` — or `qwen2`):
/// `A.context_length`, `A.embedding_length`, `A.block_count`, `A.feed_forward_length`,
/// `A.attention.head_count`, `A.attention.head_count_kv` (default: head_count),
/// `A.attention.key_length` (head_dim; default embedding / heads; `A.rope.dimension_count` must
/// equal it: no partial rotary),
/// `A.rope.freq_base` (default 10000), `A.rope.scaling.type` + `A.rope.scaling.factor` or the
/// older `A.rope.scale_linear` (linear only), `A.attention.layer_norm_rms_epsilon`,
/// `A.vocab_size` (else the length of `tokenizer.ggml.tokens`, else the embedding's rows),
/// `tokenizer.ggml.bos_token_id` / `eos_token_id`. Biases and the tied output come from which
/// tensors exist. Every value is type- and range-checked; errors name the file and the key.
extension ModelConfig {
    public static let ggufArchitectures = ["llama", "qwen2"]

    /// Bounds beyond which a value is treated as corrupt (checked before anything is allocated).
    static let ggufLimits: [String: Int] = [
        "context_length": 1 << 24, "embedding_length": 1 << 16, "block_count": 1024,
        "feed_forward_length": 1 << 18, "attention.head_count": 1024, "attention.head_count_kv": 1024,
        "attention.key_length": 4096, "attention.value_length": 4096, "rope.dimension_count": 4096,
        "vocab_size": 1 << 22,
    ]

    /// The config of a parsed GGUF file. `tensorNames` is the set of tensor names it holds.
    static func fromGGUF(_ f: GGUFFile) throws -> ModelConfig {
        let file = f.path
        func bad(_ key: String, _ expected: String, _ got: String) -> ModelError {
            .invalidConfig(file: file, field: key, message: "expected \(expected), got \(got)")
        }
        guard let archValue = f["general.architecture"] else {
            throw ModelError.invalidConfig(file: file, field: "general.architecture",
                                           message: "missing (expected one of \(ggufArchitectures.joined(separator: ", ")))")
        }
        guard let arch = archValue.string else { throw bad("general.architecture", "a string", archValue.brief) }
        guard ggufArchitectures.contains(arch) else {
            throw ModelError.invalidConfig(file: file, field: "general.architecture",
                message: "unsupported architecture '\(arch)'; supported: \(ggufArchitectures.joined(separator: ", ")) " +
                         "(Mistral and SmolLM files use 'llama')")
        }
        /// An integer key in 1...limit (nil when absent and optional).
        func int(_ suffix: String, required: Bool = true) throws -> Int? {
            let key = "\(arch).\(suffix)", limit = ggufLimits[suffix] ?? Int(Int32.max)
            guard let v = f[key] else {
                if required { throw ModelError.invalidConfig(file: file, field: key, message: "missing (expected an integer in 1...\(limit))") }
                return nil
            }
            guard let n = v.int else { throw bad(key, "an integer in 1...\(limit)", v.brief) }
            guard n >= 1 && n <= limit else { throw bad(key, "an integer in 1...\(limit)", "\(n)") }
            return n
        }
        func double(_ suffix: String) throws -> Double? {
            let key = suffix.hasPrefix("tokenizer.") ? suffix : "\(arch).\(suffix)"
            guard let v = f[key] else { return nil }
            guard let d = v.double, d.isFinite else { throw bad(key, "a number", v.brief) }
            return d
        }
        let hidden = try int("embedding_length")!
        let layers = try int("block_count")!
        let ffn = try int("feed_forward_length")!
        let context = try int("context_length")!
        let heads = try int("attention.head_count")!
        let kvHeads = try int("attention.head_count_kv", required: false) ?? heads
        guard heads % kvHeads == 0 else {
            throw bad("\(arch).attention.head_count_kv", "a divisor of \(arch).attention.head_count (\(heads))", "\(kvHeads)")
        }
        let keyLength = try int("attention.key_length", required: false)
        let valueLength = try int("attention.value_length", required: false)
        let ropeDims = try int("rope.dimension_count", required: false)
        // llama.cpp: head size = key_length (default embedding / heads); rope.dimension_count rotates
        // that many dimensions (default all). The converter writes key_length when HF's head_dim is explicit.
        let headDim = keyLength ?? hidden / heads
        if keyLength == nil && hidden % heads != 0 {
            throw bad("\(arch).attention.head_count", "a divisor of \(arch).embedding_length (\(hidden)) when no key_length is given", "\(heads)")
        }
        if let v = valueLength, v != headDim {
            throw bad("\(arch).attention.value_length", "\(headDim) (= the key length; KVLab's decoder needs equal K and V head sizes)", "\(v)")
        }
        if let r = ropeDims, r != headDim {
            throw bad("\(arch).rope.dimension_count", "\(headDim) (the head size: partial rotary embeddings are not supported)", "\(r)")
        }
        guard headDim % 2 == 0 else { throw bad("\(arch).attention.key_length", "an even head size (RoPE rotates pairs)", "\(headDim)") }
        let theta = try double("rope.freq_base") ?? 10000
        guard theta > 0 else { throw bad("\(arch).rope.freq_base", "a positive number", "\(theta)") }
        let eps = try double("attention.layer_norm_rms_epsilon")
        guard let eps, eps > 0 && eps < 1 else {
            throw bad("\(arch).attention.layer_norm_rms_epsilon", "a number in (0, 1)",
                      f["\(arch).attention.layer_norm_rms_epsilon"]?.brief ?? "nothing (missing)")
        }
        let scaling = try ropeScaling(f, arch: arch)

        // Vocabulary: A.vocab_size, else the tokenizer's token list, else the embedding.
        var vocab = try int("vocab_size", required: false)
        if vocab == nil, let tokens = f["tokenizer.ggml.tokens"] {
            guard let a = tokens.array else { throw bad("tokenizer.ggml.tokens", "an array of strings", tokens.brief) }
            vocab = a.count
        }
        if vocab == nil, let e = f.tensor("token_embd.weight"), e.dims.count == 2 { vocab = e.dims[1] }
        guard let vocab, vocab >= 1 && vocab <= 1 << 22 else {
            throw ModelError.invalidConfig(file: file, field: "\(arch).vocab_size",
                                           message: "cannot tell the vocabulary size (no vocab_size, tokenizer.ggml.tokens or token_embd.weight)")
        }
        func tokenID(_ key: String) throws -> Int? {
            guard let v = f[key] else { return nil }
            guard let n = v.int, n >= 0 && n < vocab else { throw bad(key, "a token id in 0..<\(vocab)", v.brief) }
            return n
        }
        let bos = try tokenID("tokenizer.ggml.bos_token_id")
        let eos = try tokenID("tokenizer.ggml.eos_token_id")

        let has = { (name: String) in f.tensor(name) != nil }
        let qkvBias = has("blk.0.attn_q.bias")
        let outputBias = has("blk.0.attn_output.bias")
        let mlpBias = has("blk.0.ffn_down.bias")
        // transformers (load_gguf_checkpoint): "mistral" in general.name makes it a Mistral config.
        let name = f["general.name"]?.string?.lowercased() ?? ""
        let modelType = arch == "llama" && name.contains("mistral") ? "mistral" : arch
        return try ModelConfig(
            modelType: modelType, hiddenSize: hidden, intermediateSize: ffn, layers: layers, heads: heads,
            kvHeads: kvHeads, headDim: headDim, vocabSize: vocab, maxPositions: context, ropeTheta: theta,
            ropeScaling: scaling, rmsNormEps: Float(eps), tieWordEmbeddings: !has("output.weight"),
            qkvBias: qkvBias, outputBias: outputBias, mlpBias: mlpBias, bosTokenId: bos,
            eosTokenIds: eos.map { [$0] } ?? [], source: file)
    }

    /// Linear RoPE scaling as llama.cpp reads it (`rope.scaling.type` "linear" + `rope.scaling.factor`,
    /// or the older `rope.scale_linear`); llama.cpp then divides positions by the factor. YaRN and
    /// other types are refused. (transformers' GGUF loader ignores these keys for llama/qwen2.)
    static func ropeScaling(_ f: GGUFFile, arch: String) throws -> RoPEScaling {
        let typeKey = "\(arch).rope.scaling.type", factorKey = "\(arch).rope.scaling.factor"
        var factor: Double? = nil
        if let v = f[typeKey] {
            guard let t = v.string else {
                throw ModelError.invalidConfig(file: f.path, field: typeKey, message: "expected a string, got \(v.brief)")
            }
            switch t {
            case "none": return .none
            case "linear": break
            default:
                throw ModelError.invalidConfig(file: f.path, field: typeKey, message: "unsupported rope scaling '\(t)'; supported: none, linear")
            }
            guard let fv = f[factorKey] else {
                throw ModelError.invalidConfig(file: f.path, field: factorKey, message: "missing (linear scaling needs a factor)")
            }
            factor = fv.double
            if factor == nil { throw ModelError.invalidConfig(file: f.path, field: factorKey, message: "expected a number, got \(fv.brief)") }
        } else if let v = f["\(arch).rope.scale_linear"] {
            guard let d = v.double else {
                throw ModelError.invalidConfig(file: f.path, field: "\(arch).rope.scale_linear", message: "expected a number, got \(v.brief)")
            }
            factor = d
        }
        guard let factor else { return .none }
        guard factor.isFinite && factor > 0 else {
            throw ModelError.invalidConfig(file: f.path, field: factorKey, message: "expected a positive number, got \(factor)")
        }
        return factor == 1 ? .none : .linear(factor: factor)
    }
}
