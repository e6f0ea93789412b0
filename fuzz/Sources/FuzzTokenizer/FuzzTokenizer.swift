// Fuzz target: tokenizer.json loading, then encoding and decoding. Input: the JSON, then the
// separator "\n#TEXT#\n", then the text to encode (a fixed sentence when there is none).
import Foundation
import FuzzSupport
import KVTokenizer

let separator = Array("\n#TEXT#\n".utf8)
let defaultText = "The pass key is 71432. Remember it. 71432 is the pass key.\n  Héllo, wörld! 日本語 ☃ 123"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let (json, tail) = FuzzSupport.split(UnsafeBufferPointer(start: data, count: size), at: separator)
    let text = tail.map { String(decoding: $0, as: UTF8.self) } ?? defaultText
    _ = try? TokenizerWorkLimit.check {
        let tokenizer = try Tokenizer(jsonData: Data(json), name: "fuzz/tokenizer.json")
        for special in [false, true] {
            let ids = try tokenizer.encodeChecked(text, addSpecialTokens: special)
            _ = try tokenizer.decodeChecked(ids, skipSpecialTokens: special)
        }
        let n = min(tokenizer.vocabularySize + 2, 300)
        _ = try tokenizer.decodeChecked(Array(-1 ..< n))
        for id in 0 ..< min(n, 50) { if let t = tokenizer.token(of: id) { _ = tokenizer.id(of: t) } }
        _ = (tokenizer.bosTokenId, tokenizer.eosTokenId)
    }
    return 0
}
