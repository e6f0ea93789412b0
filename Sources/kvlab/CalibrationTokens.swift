import ArgumentParser
import Foundation
import KVExperiments
import KVModel
import KVTokenizer

/// What `kvlab calibrate loki|kvsharer` runs on, and where it came from (written into the file).
struct CalibrationInput {
    var source: LokiCalibrator.Source
    /// calibration_source (text | ids_file | random), and per source: text, text_sha256, text_package,
    /// tokenizer, text_tokens; ids_file, ids_sha256; random_seed. tokens_used is added by the caller.
    var provenance: [String: String]
}

/// Calibration tokens chosen on the command line. Real text by default (`debian:licenses`, or another
/// `debian:NAME` corpus or a text file, encoded with the model's tokenizer); a file of ids; or, only
/// when asked (`--random-tokens N`), seeded random ids.
func calibrationInput(model: String, text: String, tokenizer: String?, idsFile: String?, randomTokens: Int?,
                      seed: UInt64, maxTokens: Int?) throws -> CalibrationInput {
    if let n = randomTokens {
        return .init(source: .random(count: n, seed: seed), provenance: ["calibration_source": "random", "random_seed": "\(seed)"])
    }
    if let path = idsFile {
        let content = try String(contentsOfFile: path, encoding: .utf8)
        let parts = content.split(whereSeparator: { $0 == "," || $0.isWhitespace })
        let ids = parts.compactMap { Int($0) }
        guard ids.count == parts.count else { throw ValidationError("--ids-file \(path): expected integers separated by commas or whitespace") }
        return .init(source: .tokens(Array(ids.prefix(maxTokens ?? ids.count)), label: "ids file \(path)"),
                     provenance: ["calibration_source": "ids_file", "ids_file": path, "ids_sha256": try SHA256.hex(file: path)])
    }
    var provenance = ["calibration_source": "text", "text": text]
    let body: String
    if RealText.isCorpus(text) {
        let corpus = try RealText.load(text)
        body = corpus.text
        provenance["text_sha256"] = corpus.sha256
        provenance["text_package"] = corpus.package
    } else {
        guard let s = try? String(contentsOfFile: text, encoding: .utf8) else {
            throw ValidationError("--text \(text): not a readable UTF-8 file (or debian:licenses / debian:kjv)")
        }
        body = s
        provenance["text_sha256"] = SHA256.hex(s)
    }
    let (ids, tokenizerLabel) = try encodeCalibrationText(body, model: model, tokenizer: tokenizer)
    provenance["tokenizer"] = tokenizerLabel
    provenance["text_tokens"] = "\(ids.count)"
    return .init(source: .tokens(Array(ids.prefix(maxTokens ?? ids.count)), label: "\(text) via \(tokenizerLabel)"),
                 provenance: provenance)
}

/// The one place calibration text becomes token ids: `--tokenizer` (a tokenizer.json, a folder with
/// one, or a .gguf file), else the model's own (`Tokenizer.forModel`: a folder's tokenizer.json or a
/// .gguf file's metadata). A model without one gets an error naming the alternatives.
func encodeCalibrationText(_ text: String, model: String, tokenizer: String?) throws -> (ids: [Int], tokenizer: String) {
    var path = tokenizer
    if path == nil { path = try ModelSource.parse(model).path }
    guard let tp = path, let tok = try Tokenizer.forModel(path: tp) else {
        throw ValidationError("""
            \(model) has no tokenizer to encode the calibration text: give --tokenizer (a tokenizer.json, a folder \
            with one, or a .gguf file), --ids-file FILE, or --random-tokens N for seeded random token ids (e.g. for a synthetic model)
            """)
    }
    return (tok.encode(text, addSpecialTokens: false), tok.path)
}
