import Foundation

/// The component graph of a tokenizer, as `tokenizers` holds it: a model, optional normalizer,
/// pre-tokenizer, post-processor and decoder, and the added tokens. A tokenizer.json spells it
/// out; a GGUF file's metadata is turned into the same graph (`GGUFTokenizerBuilder`).
struct TokenizerParts {
    var path: String
    var modelType: String
    var model: TokenModel
    var normalizer: Normalizer? = nil
    var preTokenizer: PreTokenizer? = nil
    var postProcessor: PostProcessor? = nil
    var decoder: Decoder? = nil
    /// In registration order; a later entry with the same content replaces an earlier one.
    var addedTokens: [AddedToken] = []
    var bos: Int? = nil
    var eos: Int? = nil
    var unk: Int? = nil
    var pad: Int? = nil
    var chatTemplate: String? = nil
}

extension TokenizerParts {
    /// The parts a `tokenizer.json` describes (`config`: a tokenizer_config.json beside it).
    init(jsonData: Data, name: String, config: JSONNode?) throws {
        let value: JSONValue
        do {
            value = try JSONParser.parse(jsonData)
        } catch let e as JSONParseError {
            throw TokenizerError.invalidJSON(path: name, reason: e.message)
        }
        let root = JSONNode(value: value, path: "", file: name)
        guard case .object = value else {
            throw TokenizerError.invalidJSON(path: name, reason: "the top level is \(value.typeName), not an object")
        }

        // Model.
        let modelNode = try root.require("model")
        guard case .object = modelNode.value else { throw modelNode.invalid("expected an object") }
        var type = try modelNode.optionalString("type")
        if type == nil {  // untagged (old) files: infer from the fields
            if modelNode.has("merges") {
                type = "BPE"
            } else if case .array? = modelNode.child("vocab")?.value {
                type = "Unigram"
            } else if modelNode.has("max_input_chars_per_word") {
                type = "WordPiece"
            } else {
                type = "WordLevel"
            }
        }
        let model: TokenModel
        switch type! {
        case "BPE": model = try BPEModel(modelNode)
        case "WordLevel": model = try WordLevelModel(modelNode)
        default:
            throw TokenizerError.unsupported(path: name, field: "model.type", value: type!,
                                             supported: ["BPE", "WordLevel"])
        }
        self.init(path: name, modelType: type!, model: model)

        // Pipeline components.
        normalizer = try root.child("normalizer").map(Normalizer.parse)
        preTokenizer = try root.child("pre_tokenizer").map(PreTokenizer.parse)
        postProcessor = try root.child("post_processor").map(PostProcessor.parse)
        decoder = try root.child("decoder").map(Decoder.parse)

        // Added tokens.
        var byContent: [TokenKey: AddedToken] = [:]
        if let list = root.child("added_tokens") {
            for node in try list.array() {
                let content = try node.require("content").string()
                if content.isEmpty { continue }
                let fileId = try node.require("id").int()
                guard fileId >= 0 else { throw node.invalid("negative id \(fileId)") }
                let key = TokenKey(content)
                let id = byContent[key]?.id ?? model.vocab.id(content) ?? fileId
                let normalized = try node.optionalBool("normalized") ?? true
                var form = content
                if normalized, let n = normalizer { form = n.normalize(content) }
                let token = AddedToken(id: id, content: content,
                                       singleWord: try node.optionalBool("single_word") ?? false,
                                       lstrip: try node.optionalBool("lstrip") ?? false,
                                       rstrip: try node.optionalBool("rstrip") ?? false,
                                       normalized: normalized,
                                       special: try node.optionalBool("special") ?? false,
                                       form: form)
                byContent[key] = token
                addedTokens.append(token)
            }
        }

        // BOS / EOS.
        func lookup(_ token: String) -> Int? { byContent[TokenKey(token)]?.id ?? model.vocab.id(token) }
        func specialNamed(_ names: [String]) -> Int? {
            for n in names { if let t = byContent[TokenKey(n)], t.special { return t.id } }
            return nil
        }
        func configToken(_ key: String) -> Int? {
            guard let node = config?.child(key) else { return nil }
            if case .string(let s) = node.value { return lookup(s) }
            if case .string(let s)? = node.child("content")?.value { return lookup(s) }
            return nil
        }
        let boundary: (bos: Int?, eos: Int?) = postProcessor?.boundaryIds ?? (nil, nil)
        bos = configToken("bos_token") ?? boundary.bos ?? specialNamed(Tokenizer.knownBOS)
        eos = configToken("eos_token") ?? boundary.eos ?? specialNamed(Tokenizer.knownEOS)
        if case .string(let template)? = config?.child("chat_template")?.value { chatTemplate = template }
    }
}
