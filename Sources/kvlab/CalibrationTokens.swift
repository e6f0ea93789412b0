import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVTokenizer

/// Calibration tokens chosen on the command line (`kvlab calibrate loki|kvsharer`): a file of ids,
/// a text file through a tokenizer (default: the model's: a folder's tokenizer.json or a .gguf file's
/// metadata, `Tokenizer.forModel`), or seeded random ids.
func calibrationSource(model: String, tokens: Int, seed: UInt64, textFile: String?, tokenizer: String?,
                       idsFile: String?, maxTokens: Int?) throws -> LokiCalibrator.Source {
    if let path = idsFile {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let parts = text.split(whereSeparator: { $0 == "," || $0.isWhitespace })
        let ids = parts.compactMap { Int($0) }
        guard ids.count == parts.count else { throw ValidationError("--ids-file \(path): expected integers separated by commas or whitespace") }
        return .tokens(Array(ids.prefix(maxTokens ?? ids.count)), label: "ids file \(path)")
    }
    if let path = textFile {
        let source = tokenizer ?? (model.hasPrefix("synthetic:") ? nil : model)
        guard let tp = source, let tok = try Tokenizer.forModel(path: tp) else {
            throw ValidationError("--text-file needs a tokenizer: give --tokenizer (a tokenizer.json, a folder with one, or a .gguf file); the model has none")
        }
        let ids = tok.encode(try String(contentsOfFile: path, encoding: .utf8), addSpecialTokens: false)
        return .tokens(Array(ids.prefix(maxTokens ?? ids.count)), label: "text file \(path) via \(tok.path)")
    }
    return .random(count: tokens, seed: seed)
}
