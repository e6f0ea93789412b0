import ArgumentParser
import Foundation
import KVTokenizer

/// Encode speed of a model's tokenizer (tokenizer.json or GGUF metadata) on a text file.
struct TokenizerBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Load time and encode tokens/s of a tokenizer on a text file (median of repeats).",
        discussion: """
        Build with -c release. 'cold' encodes with a freshly loaded tokenizer (empty word cache), \
        'warm' encodes the same text again with the same tokenizer. Example: \
        kvlab bench tokenizer --tokenizer models/SmolLM2-135M-Instruct.Q4_1.gguf --text-file data/text/kjv.txt --bytes 50000
        """)

    @Option(help: "A tokenizer.json, a model folder or a .gguf file.")
    var tokenizer: String
    @Option(name: .customLong("text-file"), help: "UTF-8 text to encode.")
    var textFile: String
    @Option(help: "Use the first N bytes of the file (cut back to a character boundary); 0 = all.")
    var bytes: Int = 50_000
    @Option(help: "Repeats; the median is reported.")
    var repeats: Int = 5

    func run() throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: textFile))
        if bytes > 0 && data.count > bytes {
            var n = bytes
            while n > 0 && data[n] & 0xC0 == 0x80 { n -= 1 }   // do not cut a UTF-8 sequence
            data = data.prefix(n)
        }
        let text = String(decoding: data, as: UTF8.self)
        var loads: [Double] = [], cold: [Double] = [], warm: [Double] = []
        var count = 0
        for _ in 0..<max(repeats, 1) {
            var tok: Tokenizer?
            loads.append(clock { tok = try? Tokenizer.forModel(path: tokenizer) })
            guard let t = tok else { _ = try Tokenizer.forModel(path: tokenizer); throw ValidationError("\(tokenizer): no tokenizer") }
            cold.append(clock { count = t.encode(text).count })
            warm.append(clock { count = t.encode(text).count })
        }
        print("\(tokenizer): \(data.count) bytes, \(text.unicodeScalars.count) characters -> \(count) tokens; median of \(repeats)")
        print(String(format: "load   %8.3f s", median(loads)))
        print(String(format: "cold   %8.3f s  %10.0f tokens/s  %6.2f MB/s", median(cold), Double(count) / median(cold), Double(data.count) / median(cold) / 1e6))
        print(String(format: "warm   %8.3f s  %10.0f tokens/s  %6.2f MB/s", median(warm), Double(count) / median(warm), Double(data.count) / median(warm) / 1e6))
    }
}
