import Foundation
import KVTokenizer

/// A model folder's tokenizer.json as the text codec of text tasks.
struct TokenizerCodec: TextCodec {
    let tokenizer: Tokenizer

    /// The folder's tokenizer, or nil when it ships none.
    static func load(directory: String) throws -> TextCodec? {
        let path = URL(fileURLWithPath: directory).appendingPathComponent("tokenizer.json").path
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return TokenizerCodec(tokenizer: try TokenizerWorkLimit.check { try Tokenizer(path: path) })
    }

    func encode(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }   // BOS as HF tokenizers add it
    func decode(_ ids: [Int]) -> String { tokenizer.decode(ids, skipSpecialTokens: true) }
}
