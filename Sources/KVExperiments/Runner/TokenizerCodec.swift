import Foundation
import KVPolicies
import KVTokenizer

/// A model's tokenizer (a folder's tokenizer.json or a GGUF file's metadata) as the text codec
/// of text tasks.
struct TokenizerCodec: TextCodec {
    let tokenizer: Tokenizer

    /// The model's tokenizer: a checkpoint folder's tokenizer.json or a .gguf file's metadata;
    /// nil when a folder ships none.
    static func load(model path: String) throws -> TextCodec? {
        try TokenizerWorkLimit.check { try Tokenizer.forModel(path: path) }.map { TokenizerCodec(tokenizer: $0) }
    }

    /// A folder's tokenizer.json, or nil when it ships none.
    static func load(directory: String) throws -> TextCodec? { try load(model: directory) }

    /// The codec and prompt style of a model path (folder or .gguf file). A folder's
    /// tasks.json sets the style; a GGUF file uses the standard style.
    static func textSetup(model path: String) throws -> (TextCodec?, PromptStyle) {
        var isDirectory: ObjCBool = false
        let folder = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        return (try load(model: path), folder ? try PromptStyle.forModel(directory: path) : .standard)
    }

    func encode(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }   // BOS as HF tokenizers add it
    var chatTemplate: String? { tokenizer.chatTemplate }
    var bosText: String { tokenizer.bosTokenId.map { tokenizer.decode([$0], skipSpecialTokens: false) } ?? "" }
    var eosText: String { tokenizer.eosTokenId.map { tokenizer.decode([$0], skipSpecialTokens: false) } ?? "" }
    func decode(_ ids: [Int]) -> String { tokenizer.decode(ids, skipSpecialTokens: true) }
}

extension TokenVocabulary {
    /// A model's vocabulary for policies that type tokens: every id's text (the tokenizer's decode of
    /// the id alone, special tokens as no text) when `codec` is there, else the size only.
    static func of(codec: TextCodec?, size: Int) -> TokenVocabulary {
        guard let codec else { return TokenVocabulary(size: size) }
        return TokenVocabulary(size: size) { codec.decode([$0]) }
    }

    /// The vocabulary of the model at `path` (a folder or a .gguf file) with `size` ids, as sweeps bind it.
    public static func load(model path: String, size: Int) throws -> TokenVocabulary {
        .of(codec: try TokenizerCodec.load(model: path), size: size)
    }
}

/// A vocabulary built on first use, once (a sweep without a policy that types tokens never decodes
/// the pieces; thread-safe, as samples run concurrently with --jobs).
final class LazyVocabulary: @unchecked Sendable {
    private let lock = NSLock()
    private var value: TokenVocabulary?
    private let build: () -> TokenVocabulary
    init(_ build: @escaping () -> TokenVocabulary) { self.build = build }
    func get() -> TokenVocabulary? {
        lock.lock(); defer { lock.unlock() }
        if value == nil { value = build() }
        return value
    }
}
