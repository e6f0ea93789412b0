import ArgumentParser
import Foundation
import KVTokenizer

/// `kvlab tokenize`: a model's tokenizer on a text (ids) or on ids (text).
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text (or decode ids) with a model's tokenizer: a folder's tokenizer.json or a .gguf file's metadata.",
        discussion: """
        Prints the ids comma-separated (--text / --text-file), or the decoded text (--ids). Special \
        tokens written in the text (e.g. <|im_start|>) are matched; BOS/EOS are added as the \
        tokenizer says unless --no-special. Example: \
        kvlab tokenize --model models/SmolLM2-135M-Instruct.Q4_1.gguf --text $'<|im_start|>user\\nHi'
        """)

    @Option(help: "A model folder, a .gguf file or a tokenizer.json.")
    var model: String
    @Option(help: "Text to encode.")
    var text: String?
    @Option(name: .customLong("text-file"), help: "UTF-8 file to encode.")
    var textFile: String?
    @Option(help: "Ids to decode, comma-separated.")
    var ids: String?
    @Flag(name: .customLong("no-special"), help: "Encode without BOS/EOS; decode keeping special tokens.")
    var noSpecial = false

    func validate() throws {
        guard [text != nil, textFile != nil, ids != nil].filter({ $0 }).count == 1 else {
            throw ValidationError("give exactly one of --text, --text-file or --ids")
        }
    }

    func run() throws {
        guard let tok = try Tokenizer.forModel(path: model) else { throw ValidationError("\(model) has no tokenizer.json") }
        if let ids = ids {
            print(tok.decode(try parseIds(ids, field: "--ids"), skipSpecialTokens: !noSpecial))
            return
        }
        let input = try text ?? String(contentsOfFile: textFile!, encoding: .utf8)
        print(tok.encode(input, addSpecialTokens: !noSpecial).map(String.init).joined(separator: ","))
    }
}
