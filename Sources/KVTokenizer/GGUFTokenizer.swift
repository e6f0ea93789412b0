import Foundation
import KVGGUF

// Reference: transformers/integrations/gguf/gguf_tokenizer_mapping.py (transformers 5.x), the
// GGUF tokenizer of `AutoTokenizer.from_pretrained(dir, gguf_file=...)`; llama.cpp's key names
// (gguf-py/gguf/constants.py). The ids equal transformers' for the files in
// Tests/KVTokenizerTests/Fixtures/gguf (scripts/fixtures/make_gguf_tokenizer_fixtures.py).

extension Tokenizer {
    /// The tokenizer a GGUF file's metadata describes, built as transformers builds it
    /// (docs/tokenizer.md):
    ///
    ///  - `tokenizer.ggml.model` "gpt2": byte-level BPE. Tokens outside the GPT-2 byte alphabet
    ///    are respelled byte by byte; merges from `tokenizer.ggml.merges`. The pre-tokenizer
    ///    follows `tokenizer.ggml.pre`: the Llama 3, Qwen2, Qwen3.5, Tekken or GPT-4o split
    ///    regex before a regex-free ByteLevel, else (gpt-2, smollm, default, ...) GPT-2's
    ///    ByteLevel regex. ByteLevel decoder.
    ///  - "llama": SentencePiece-style BPE with byte fallback; merges from the file, or derived
    ///    from the vocabulary and `tokenizer.ggml.scores` (transformers' `generate_merges`);
    ///    Metaspace("▁", prepend "first", no split); decoder Replace("▁", " "), ByteFallback,
    ///    Fuse, Strip(one leading space). Like transformers, `add_space_prefix` is not read.
    ///
    /// Added tokens: token type CONTROL (3) as special tokens (for gpt2 only those spelled in the
    /// byte alphabet), USER_DEFINED (4) as plain added tokens when the vocabulary has them, then
    /// the bos/eos/unk/padding tokens as special tokens. BOS is added when
    /// `tokenizer.ggml.add_bos_token` says so (default: true for "llama", false for "gpt2"),
    /// EOS when `add_eos_token` is true.
    public convenience init(gguf path: String) throws {
        try self.init(gguf: try GGUFFile(path: path))
    }

    /// The tokenizer of an already opened GGUF file.
    public convenience init(gguf file: GGUFFile) throws {
        try self.init(parts: GGUFTokenizerBuilder(file: file).parts())
    }
}

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
enum GGUFTokenType: Int {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// GGUF metadata -> the component graph transformers builds for it.
struct GGUFTokenizerBuilder {
    let file: GGUFFile

    static let supportedModels = ["gpt2", "llama"]
    /// SentencePiece files of these architectures get their own builders in transformers
    /// (Gemma's respelled spaces and file-order merges, Phi-3's normalizer); not reproduced.
    static let unsupportedSentencePieceArchitectures = ["gemma", "gemma2", "gemma3", "phi3"]

    func parts() throws -> TokenizerParts {
        let kind = try string("tokenizer.ggml.model")
        let architecture = file["general.architecture"]?.string ?? ""
        let tokens = try strings("tokenizer.ggml.tokens")
        let types = try optionalInts("tokenizer.ggml.token_type") ?? []
        var parts: TokenizerParts
        var inner: [String]   // the special tokens the transformers class adds by default
        switch kind {
        case "gpt2":
            parts = try byteLevel(tokens)
            inner = ["<|endoftext|>"]
        case "llama":
            if Self.unsupportedSentencePieceArchitectures.contains(architecture) {
                throw TokenizerError.unsupported(path: file.path, field: "general.architecture", value: architecture,
                                                 supported: ["llama", "mistral", "qwen2", "... (any but \(Self.unsupportedSentencePieceArchitectures.joined(separator: ", ")))"])
            }
            parts = try sentencePiece(tokens)
            inner = ["<s>", "</s>", "<unk>"]
        default:
            throw TokenizerError.unsupported(path: file.path, field: "tokenizer.ggml.model", value: kind,
                                             supported: Self.supportedModels)
        }
        parts.chatTemplate = file["tokenizer.chat_template"]?.string

        // Added tokens, in transformers' registration order; the first registration of a content wins.
        var added = AddedTokenRegistry(vocab: parts.model.vocab)
        for t in inner { added.add(t, special: true) }
        let byteAlphabet = Set(ByteLevelTable.byteToScalar.map(\.value))
        for (token, type) in zip(tokens, types) where type == GGUFTokenType.control.rawValue {
            if kind == "gpt2", !token.unicodeScalars.allSatisfy({ byteAlphabet.contains($0.value) }) { continue }
            added.add(token, special: true)
        }
        for (token, type) in zip(tokens, types) where type == GGUFTokenType.userDefined.rawValue {
            if added.id(of: token) != nil { added.add(token, special: false) }
        }
        // The named special tokens (bos, eos, unk, pad), by the ids the file gives.
        func named(_ key: String) throws -> String? {
            guard let id = try optionalInt("tokenizer.ggml.\(key)") else { return nil }
            guard id >= 0, id < tokens.count else {
                throw TokenizerError.invalidField(path: file.path, field: "tokenizer.ggml.\(key)",
                                                  reason: "id \(id) is not a token id (the vocabulary has \(tokens.count) tokens)")
            }
            return tokens[id]
        }
        let bos = try named("bos_token_id"), eos = try named("eos_token_id")
        let unk = try named("unknown_token_id"), pad = try named("padding_token_id")
        for t in [bos, eos, unk, pad].compactMap({ $0 }) { added.add(t, special: true) }
        parts.addedTokens = added.tokens
        parts.bos = bos.flatMap(added.id(of:))
        parts.eos = eos.flatMap(added.id(of:))
        parts.unk = unk.flatMap(added.id(of:))
        parts.pad = pad.flatMap(added.id(of:))

        // BOS / EOS around the text, as transformers' update_post_processor writes the template.
        let addBOS = try optionalBool("tokenizer.ggml.add_bos_token") ?? (kind == "llama")
        let addEOS = try optionalBool("tokenizer.ggml.add_eos_token") ?? false
        let prefix = addBOS ? [parts.bos].compactMap { $0 } : []
        let suffix = addEOS ? [parts.eos].compactMap { $0 } : []
        parts.postProcessor = .template(prefix: prefix, suffix: suffix,
                                        prefixTokens: prefix.isEmpty ? [] : [bos!], suffixTokens: suffix.isEmpty ? [] : [eos!])
        return parts
    }

    // MARK: - The two models

    private func byteLevel(_ tokens: [String]) throws -> TokenizerParts {
        let alphabet = Set(ByteLevelTable.byteToScalar.map(\.value))
        let spelled = tokens.map { t in
            t.unicodeScalars.allSatisfy { alphabet.contains($0.value) } ? t : ByteLevelTable.encode(t)
        }
        let vocab = Vocabulary(tokens: spelled)
        let pairs = try merges() ?? SentencePieceMerges.derive(tokens: tokens, scores: try scores(for: "tokenizer.ggml.merges"))
        let model = try BPEModel(vocab: vocab, merges: pairs, options: .init(), fail: mergeError)
        var parts = TokenizerParts(path: file.path, modelType: "BPE", model: model)
        let pre = file["tokenizer.ggml.pre"]?.string ?? "default"
        if let pattern = GGUFPreTokenizer.splitPattern(pre) {
            let regex: OnigRegex
            do { regex = try OnigRegex(pattern: pattern) } catch {
                throw TokenizerError.invalidField(path: file.path, field: "tokenizer.ggml.pre",
                                                  reason: "the split regex for '\(pre)' does not compile: \(error)")
            }
            parts.preTokenizer = .sequence([.split(.regex(regex), .isolated, invert: false),
                                            .byteLevel(addPrefixSpace: false, useRegex: false)])
        } else {
            parts.preTokenizer = .byteLevel(addPrefixSpace: false, useRegex: true)
        }
        parts.decoder = .byteLevel
        return parts
    }

    private func sentencePiece(_ tokens: [String]) throws -> TokenizerParts {
        let vocab = Vocabulary(tokens: tokens)
        let pairs = try merges() ?? SentencePieceMerges.derive(tokens: tokens, scores: try scores(for: "tokenizer.ggml.merges"))
        var options = BPEModel.Options()
        options.fuseUnk = true
        options.byteFallback = true
        let model = try BPEModel(vocab: vocab, merges: pairs, options: options, fail: mergeError)
        var parts = TokenizerParts(path: file.path, modelType: "BPE", model: model)
        parts.preTokenizer = .metaspace(replacement: "\u{2581}", scheme: .first, split: false)
        parts.decoder = .sequence([.replace(.literal("\u{2581}"), " "), .byteFallback, .fuse,
                                   .strip(content: " ", start: 1, stop: 0)])
        return parts
    }

    // MARK: - Metadata access with located errors

    private func mergeError(_ index: Int, _ reason: String) -> Error {
        TokenizerError.invalidField(path: file.path, field: "tokenizer.ggml.merges[\(index)]", reason: reason)
    }

    /// `tokenizer.ggml.merges` as pairs, or nil when the file has none.
    private func merges() throws -> [(String, String)]? {
        guard let lines = try optionalStrings("tokenizer.ggml.merges") else { return nil }
        return try lines.enumerated().map { i, line in
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 2 else {
                throw mergeError(i, "expected \"left right\" (two tokens separated by one space), found \(line.debugDescription)")
            }
            return (String(parts[0]), String(parts[1]))
        }
    }

    private func scores(for missing: String) throws -> [Double] {
        guard let v = file["tokenizer.ggml.scores"] else {
            throw TokenizerError.missingField(path: file.path, field: "tokenizer.ggml.scores (needed to derive merges: the file has no \(missing))")
        }
        guard let a = v.array, case let d = a.compactMap(\.double), d.count == a.count else {
            throw invalid("tokenizer.ggml.scores", v, "an array of numbers")
        }
        return d
    }

    private func invalid(_ key: String, _ v: GGUFValue, _ expected: String) -> TokenizerError {
        .invalidField(path: file.path, field: key, reason: "expected \(expected), found \(v.brief)")
    }

    private func string(_ key: String) throws -> String {
        guard let v = file[key] else { throw TokenizerError.missingField(path: file.path, field: key) }
        guard let s = v.string else { throw invalid(key, v, "a string") }
        return s
    }

    private func strings(_ key: String) throws -> [String] {
        guard let s = try optionalStrings(key) else { throw TokenizerError.missingField(path: file.path, field: key) }
        return s
    }

    private func optionalStrings(_ key: String) throws -> [String]? {
        guard let v = file[key] else { return nil }
        guard let s = v.strings else { throw invalid(key, v, "an array of strings") }
        return s
    }

    private func optionalInts(_ key: String) throws -> [Int]? {
        guard let v = file[key] else { return nil }
        guard let s = v.ints else { throw invalid(key, v, "an array of integers") }
        return s
    }

    private func optionalInt(_ key: String) throws -> Int? {
        guard let v = file[key] else { return nil }
        guard let i = v.int else { throw invalid(key, v, "an integer") }
        return i
    }

    private func optionalBool(_ key: String) throws -> Bool? {
        guard let v = file[key] else { return nil }
        guard let b = v.bool else { throw invalid(key, v, "true or false") }
        return b
    }
}

/// Added tokens as `tokenizers`' AddedVocabulary registers them: a content already added is
/// ignored; a new one takes its model-vocabulary id, else the next id after the vocabulary and
/// the added tokens. Every GGUF added token is matched on the raw text (normalized: false).
struct AddedTokenRegistry {
    let vocab: Vocabulary
    private(set) var tokens: [AddedToken] = []
    private var byContent: [TokenKey: Int] = [:]

    init(vocab: Vocabulary) { self.vocab = vocab }

    /// The id of a content: an added token's, else the model vocabulary's.
    func id(of content: String) -> Int? { byContent[TokenKey(content)] ?? vocab.id(content) }

    mutating func add(_ content: String, special: Bool) {
        let key = TokenKey(content)
        guard !content.isEmpty, byContent[key] == nil else { return }
        let id = vocab.id(content) ?? max(vocab.idOf.count, (tokens.map(\.id).max() ?? -1) + 1)
        byContent[key] = id
        tokens.append(AddedToken(id: id, content: content, singleWord: false, lstrip: false, rstrip: false,
                                 normalized: false, special: special, form: content))
    }
}
