import Foundation
import KVTensor

extension ModelConfig {
    /// Reads a Hugging Face `config.json` (model_type llama, mistral or qwen2).
    public static func load(huggingFace path: String) throws -> ModelConfig {
        guard FileManager.default.fileExists(atPath: path) else { throw ModelError.fileNotFound(path) }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ModelError.unreadable(file: path, reason: "permission denied or not a file")
        }
        let object: JSONValue
        do { object = try JSONValue.parse(data) } catch {
            throw ModelError.invalidConfig(file: path, field: "(file)", message: "not valid JSON")
        }
        guard let json = object.object else {
            throw ModelError.invalidConfig(file: path, field: "(file)", message: "expected a JSON object at the top level")
        }
        return try parse(json, file: path)
    }

    static func parse(_ json: [String: JSONValue], file: String) throws -> ModelConfig {
        let r = FieldReader(json: json, file: file)
        let modelType: String = try r.string("model_type")
        guard supportedTypes.contains(modelType) else {
            throw ModelError.invalidConfig(file: file, field: "model_type",
                message: "unsupported model_type '\(modelType)'; supported: \(supportedTypes.joined(separator: ", "))")
        }
        let heads = try r.int("num_attention_heads")
        let hidden = try r.int("hidden_size")
        let attentionBias = try r.bool("attention_bias", default: false)
        return try ModelConfig(
            modelType: modelType, hiddenSize: hidden, intermediateSize: try r.int("intermediate_size"),
            layers: try r.int("num_hidden_layers"), heads: heads,
            kvHeads: try r.intOrNil("num_key_value_heads") ?? heads,
            headDim: try r.intOrNil("head_dim"), vocabSize: try r.int("vocab_size"),
            maxPositions: try r.intOrNil("max_position_embeddings") ?? 32768,
            ropeTheta: try ropeTheta(json, file: file),
            ropeScaling: try parseRopeScaling(json["rope_scaling"] ?? json["rope_parameters"], file: file),
            rmsNormEps: Float(try r.doubleOrNil("rms_norm_eps") ?? 1e-6),
            tieWordEmbeddings: try r.bool("tie_word_embeddings", default: false),
            qkvBias: modelType == "qwen2" ? true : attentionBias,
            outputBias: modelType == "qwen2" ? false : attentionBias,
            mlpBias: try r.bool("mlp_bias", default: false),
            bosTokenId: try r.intOrNil("bos_token_id"),
            eosTokenIds: try r.intList("eos_token_id"), source: file)
    }

    /// `rope_theta` at the top level (transformers 4.x) or inside `rope_parameters` (5.x).
    static func ropeTheta(_ json: [String: JSONValue], file: String) throws -> Double {
        if let top = try FieldReader(json: json, file: file).doubleOrNil("rope_theta") { return top }
        if let params = json["rope_parameters"]?.object,
           let t = try FieldReader(json: params, file: file, prefix: "rope_parameters.").doubleOrNil("rope_theta") { return t }
        return 10000
    }

    static func parseRopeScaling(_ value: JSONValue?, file: String) throws -> RoPEScaling {
        guard let value, !value.isNull else { return .none }
        guard let dict = value.object else {
            throw ModelError.invalidConfig(file: file, field: "rope_scaling", message: "expected an object or null")
        }
        let r = FieldReader(json: dict, file: file, prefix: "rope_scaling.")
        let type = try (try? r.string("rope_type")) ?? r.string("type")
        switch type {
        case "default": return .none
        case "linear": return .linear(factor: try r.double("factor"))
        case "llama3":
            return .llama3(factor: try r.double("factor"), lowFreqFactor: try r.double("low_freq_factor"),
                           highFreqFactor: try r.double("high_freq_factor"),
                           originalMaxPositions: try r.int("original_max_position_embeddings"))
        default:
            throw ModelError.invalidConfig(file: file, field: "rope_scaling.rope_type",
                                           message: "unsupported rope scaling '\(type)'; supported: default, linear, llama3")
        }
    }
}

/// Typed access to JSON fields with errors that name the file, the field and the expectation.
struct FieldReader {
    let json: [String: JSONValue]
    let file: String
    var prefix = ""

    private func fail(_ key: String, _ expected: String) -> ModelError {
        .invalidConfig(file: file, field: prefix + key, message: "expected \(expected), got \(json[key]?.brief ?? "nothing")")
    }
    private func present(_ key: String) -> JSONValue? {
        guard let v = json[key], !v.isNull else { return nil }
        return v
    }
    func string(_ key: String) throws -> String {
        guard let s = present(key)?.string else { throw fail(key, "a string") }
        return s
    }
    func intOrNil(_ key: String) throws -> Int? {
        guard let v = present(key) else { return nil }
        guard let n = v.int else { throw fail(key, "an integer") }
        return n
    }
    func int(_ key: String) throws -> Int {
        guard let v = try intOrNil(key) else { throw fail(key, "an integer") }
        return v
    }
    func doubleOrNil(_ key: String) throws -> Double? {
        guard let v = present(key) else { return nil }
        guard let n = v.double else { throw fail(key, "a number") }
        return n
    }
    func double(_ key: String) throws -> Double {
        guard let v = try doubleOrNil(key) else { throw fail(key, "a number") }
        return v
    }
    func bool(_ key: String, default def: Bool) throws -> Bool {
        guard let v = present(key) else { return def }
        guard let b = v.bool else { throw fail(key, "true or false") }
        return b
    }
    func intList(_ key: String) throws -> [Int] {
        guard let v = present(key) else { return [] }
        if let n = v.int { return [n] }
        guard let a = v.array, case let ints = a.compactMap(\.int), ints.count == a.count else {
            throw fail(key, "an integer or a list of integers")
        }
        return ints
    }
}
