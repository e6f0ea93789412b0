import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVTokenizer

/// Calibration tokens chosen on the command line (`kvlab calibrate loki|kvsharer`): a file of ids,
/// a text file through a tokenizer (default: the model folder's tokenizer.json), or seeded random ids.
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
        var tokPath = tokenizer
        if tokPath == nil, case .checkpoint(let dir) = try ModelSource.parse(model) {
            tokPath = URL(fileURLWithPath: dir).appendingPathComponent("tokenizer.json").path
        }
        guard let tp = tokPath, FileManager.default.fileExists(atPath: tp) else {
            throw ValidationError("--text-file needs a tokenizer: give --tokenizer tokenizer.json (the model has none)")
        }
        let ids = try Tokenizer(path: tp).encode(try String(contentsOfFile: path, encoding: .utf8), addSpecialTokens: false)
        return .tokens(Array(ids.prefix(maxTokens ?? ids.count)), label: "text file \(path) via \(tp)")
    }
    return .random(count: tokens, seed: seed)
}
