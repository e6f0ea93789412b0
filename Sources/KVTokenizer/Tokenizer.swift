import Foundation

/// A Hugging Face `tokenizer.json` reader with encode and decode, following the
/// `tokenizers` library (Rust; PyPI `tokenizers`) step by step:
///
///  1. added tokens that are not `normalized` are cut out of the raw text;
///  2. each remaining piece is normalized, then `normalized` added tokens are cut out;
///  3. the pre-tokenizer splits each piece into words;
///  4. the model (BPE or WordLevel) turns each word into ids;
///  5. with `addSpecialTokens`, the post-processor adds its special tokens (e.g. BOS).
///
/// Decoding maps ids to token strings (unknown ids are dropped, special tokens
/// optionally skipped) and runs the decoder chain, or joins with spaces when there
/// is none.
///
/// Supported components:
///  - models: BPE (merges as "a b" strings or [a, b] pairs; byte_fallback, unk_token,
///    fuse_unk, ignore_merges, continuing_subword_prefix, end_of_word_suffix), WordLevel;
///  - normalizers: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip,
///    StripAccents, ByteLevel;
///  - pre-tokenizers: ByteLevel (add_prefix_space, use_regex), Split (String or Regex
///    pattern; every behavior; invert), Sequence, Digits, Metaspace, Whitespace,
///    WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer;
///  - decoders: ByteLevel, Sequence, Replace, ByteFallback, Fuse, Strip, Metaspace,
///    BPEDecoder;
///  - post-processors: TemplateProcessing (single sequence), ByteLevel, Sequence,
///    RobertaProcessing, BertProcessing.
///
/// Not applied: "truncation" and "padding" settings, BPE dropout. Unicode
/// normalization (NFC, NFKC, ...) and regex character classes use Foundation/ICU
/// tables, which can differ from the Rust crates' for rare, recently added characters. Anything else
/// (Unigram or WordPiece models, Precompiled or Bert normalizers, ...) is rejected
/// with a `TokenizerError.unsupported` naming the file and the field.
///
/// Regex patterns (Split, Replace, the ByteLevel GPT-2 regex) are Oniguruma patterns
/// in `tokenizers`; here they run on ICU (NSRegularExpression) after rewriting the
/// shorthand classes whose meaning differs (see `OnigRegex`).
///
/// Instances are immutable apart from an internal, locked word cache, so one
/// tokenizer can be shared across threads.
public final class Tokenizer: @unchecked Sendable {
    /// The tokenizer.json file this tokenizer was read from.
    public let path: String
    /// "BPE" or "WordLevel".
    public let modelType: String
    /// The beginning-of-sequence id: the special token the post-processor puts before
    /// the text, else a special added token with a well-known name (<s>,
    /// <|begin_of_text|>, [BOS], ...), or `bos_token` of a tokenizer_config.json next
    /// to the file, which takes precedence.
    public let bosTokenId: Int?
    /// The end-of-sequence id, found the same way (</s>, <|end_of_text|>,
    /// <|endoftext|>, [EOS], ...).
    public let eosTokenId: Int?
    /// Ids of the added tokens marked `special`.
    public let specialTokenIds: Set<Int>
    /// The unknown and padding token ids a GGUF file names (`tokenizer.ggml.unknown_token_id`,
    /// `padding_token_id`); nil for tokenizer.json files.
    public let unknownTokenId: Int?
    public let paddingTokenId: Int?
    /// Whether `encode(_:addSpecialTokens: true)` puts special tokens before / after the text
    /// (e.g. BOS for Llama 2, none for SmolLM2).
    public var addsBOS: Bool { postProcessor?.boundaryIds.bos != nil }
    public var addsEOS: Bool { postProcessor?.boundaryIds.eos != nil }
    /// The chat template (Jinja) the model ships: a GGUF's `tokenizer.chat_template`, or
    /// `chat_template` of a tokenizer_config.json beside a tokenizer.json. Not rendered here.
    public let chatTemplate: String?

    private let model: TokenModel
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let postProcessor: PostProcessor?
    private let decoder: Decoder?
    private let addedById: [Int: AddedToken]
    private let addedByContent: [TokenKey: AddedToken]
    private let specialContents: Set<TokenKey>
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher
    private let maxId: Int

    static let knownBOS = ["<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>", "[BOS]", "<BOS>", "[CLS]"]
    static let knownEOS = ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>", "[EOS]", "<EOS>", "[SEP]"]

    /// Read a tokenizer from a `tokenizer.json` file, or from a folder that contains
    /// one. A `tokenizer_config.json` beside it may name `bos_token` / `eos_token`;
    /// if that file exists but is not valid JSON, the error names it.
    public convenience init(path: String) throws {
        var isDirectory: ObjCBool = false
        var file = path
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = (path as NSString).appendingPathComponent("tokenizer.json")
        }
        guard FileManager.default.fileExists(atPath: file) else { throw TokenizerError.fileNotFound(path: file) }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file))
        } catch {
            throw TokenizerError.unreadable(path: file, reason: error.localizedDescription)
        }
        let configFile = ((file as NSString).deletingLastPathComponent as NSString)
            .appendingPathComponent("tokenizer_config.json")
        var config: JSONNode? = nil
        if FileManager.default.fileExists(atPath: configFile) {
            do {
                let configData = try Data(contentsOf: URL(fileURLWithPath: configFile))
                config = JSONNode(value: try JSONParser.parse(configData), path: "", file: configFile)
            } catch let e as JSONParseError {
                throw TokenizerError.invalidJSON(path: configFile, reason: e.message)
            } catch {
                throw TokenizerError.unreadable(path: configFile, reason: error.localizedDescription)
            }
        }
        try self.init(jsonData: data, name: file, config: config)
    }

    /// Read a tokenizer from the bytes of a tokenizer.json; `name` is used in errors.
    public convenience init(jsonData: Data, name: String = "tokenizer.json") throws {
        try self.init(jsonData: jsonData, name: name, config: nil)
    }

    convenience init(jsonData: Data, name: String, config: JSONNode?) throws {
        try self.init(parts: TokenizerParts(jsonData: jsonData, name: name, config: config))
    }

    /// A tokenizer from its components: what a tokenizer.json or a GGUF file describes.
    init(parts: TokenizerParts) {
        path = parts.path
        modelType = parts.modelType
        model = parts.model
        normalizer = parts.normalizer
        preTokenizer = parts.preTokenizer
        postProcessor = parts.postProcessor
        decoder = parts.decoder
        chatTemplate = parts.chatTemplate

        // Added tokens: the last entry of a content wins (ids resolved against the model vocabulary).
        var byId: [Int: AddedToken] = [:]
        var byContent: [TokenKey: AddedToken] = [:]
        var ordered: [TokenKey] = []
        for token in parts.addedTokens {
            let key = TokenKey(token.content)
            if byContent[key] == nil { ordered.append(key) }
            byContent[key] = token
            byId[token.id] = token
        }
        addedById = byId
        addedByContent = byContent
        let tokens = ordered.compactMap { byContent[$0] }
        rawMatcher = AddedTokenMatcher(tokens.filter { !$0.normalized })
        normalizedMatcher = AddedTokenMatcher(tokens.filter { $0.normalized })
        specialContents = Set(tokens.filter(\.special).map { TokenKey($0.content) })
        specialTokenIds = Set(tokens.filter(\.special).map(\.id))
        maxId = max(model.vocab.maxId, byId.keys.max() ?? -1)
        bosTokenId = parts.bos
        eosTokenId = parts.eos
        unknownTokenId = parts.unk
        paddingTokenId = parts.pad
    }

    // MARK: - Vocabulary

    /// Number of ids: one more than the largest id of the model vocabulary and the
    /// added tokens (the `tokenizers` vocab size with added tokens for well-formed files).
    public var vocabularySize: Int { maxId + 1 }

    /// The id of a token string (added tokens first, then the model vocabulary).
    /// Tokens are compared byte for byte.
    public func id(of token: String) -> Int? {
        addedByContent[TokenKey(token)]?.id ?? model.vocab.id(token)
    }

    /// The token string of an id (for byte-level models, in the byte-level alphabet).
    public func token(of id: Int) -> String? {
        addedById[id]?.form ?? model.vocab.tokenOf[id]
    }

    /// Whether the id is a special added token.
    public func isSpecial(_ id: Int) -> Bool { specialTokenIds.contains(id) }

    // MARK: - Encode / decode

    /// Token ids of `text`. With `addSpecialTokens`, the post-processor's special
    /// tokens (e.g. BOS for Llama) are added, as `tokenizers`' `add_special_tokens=True`.
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        for segment in rawMatcher.split(text) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let raw, let rawStart):
                let normalized = normalizer?.normalize(raw) ?? raw
                for inner in normalizedMatcher.split(normalized) {
                    switch inner {
                    case .token(let id):
                        ids.append(id)
                    case .text(let s, let start):
                        let piece = Piece(text: s, atStart: rawStart == 0 && start == 0)
                        if let pre = preTokenizer {
                            for word in pre.preTokenize([piece]) { model.tokenize(word.text, into: &ids) }
                        } else {
                            model.tokenize(s, into: &ids)
                        }
                    }
                }
            }
        }
        return postProcessor?.process(ids, addSpecialTokens: addSpecialTokens) ?? ids
    }

    /// The text of `ids`. Ids that are not in the vocabulary are skipped; with
    /// `skipSpecialTokens`, so are special added tokens.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let t = token(of: id) else { continue }
            if skipSpecialTokens, specialContents.contains(TokenKey(t)) { continue }
            tokens.append(t)
        }
        guard let decoder = decoder else { return tokens.joined(separator: " ") }
        return decoder.decodeChain(tokens).joined()
    }
}
