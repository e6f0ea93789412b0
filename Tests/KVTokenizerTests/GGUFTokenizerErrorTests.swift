import Foundation
import XCTest
import KVTestSupport
import KVGGUF
import KVTokenizer

/// GGUF tokenizer metadata that cannot be built gets an error naming the file and the key;
/// a hand-built vocabulary encodes as worked out by hand.
final class GGUFTokenizerErrorTests: XCTestCase {
    static func strings(_ s: [String]) -> GGUFValue { .array(s.map { .string($0) }) }

    /// A minimal byte-level tokenizer: a, b, ab, Ġ (space), Ġa; merges "a b", "Ġ a".
    static func byteLevel() -> GGUFWriter {
        GGUFWriter(metadata: [
            ("general.architecture", .string("llama")),
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.tokens", strings(["a", "b", "ab", "Ġ", "Ġa", "<eos>"])),
            ("tokenizer.ggml.token_type", .array([1, 1, 1, 1, 1, 3].map { GGUFValue.int($0) })),
            ("tokenizer.ggml.merges", strings(["a b", "Ġ a"])),
            ("tokenizer.ggml.eos_token_id", .uint(5)),
        ])
    }

    func expectError(_ w: GGUFWriter, _ name: String, _ fragments: [String], line: UInt = #line) throws {
        let path = try w.writeTemporary(name)
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try Tokenizer(gguf: path), line: line) { e in
            let m = (e as? LocalizedError)?.errorDescription ?? "\(e)"
            for f in [path] + fragments { XCTAssertTrue(m.contains(f), "'\(f)' not in: \(m)", line: line) }
        }
    }

    func replacing(_ key: String, with value: GGUFValue?) -> GGUFWriter {
        var w = Self.byteLevel()
        w.metadata = w.metadata.compactMap { $0.0 == key ? value.map { v in (key, v) } : $0 }
        return w
    }

    func testHandBuiltByteLevel() throws {
        let path = try Self.byteLevel().writeTemporary("handbuilt")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let tok = try Tokenizer(gguf: path)
        // "ab a b": GPT-2 regex words "ab", " a", " b"; "a b" merges to ab, "Ġ a" to Ġa; " b" stays Ġ b.
        XCTAssertEqual(tok.encode("ab a b"), [2, 4, 3, 1])
        XCTAssertEqual(tok.decode([2, 4, 3, 1]), "ab a b")
        XCTAssertEqual(tok.encode("a<eos>"), [0, 5])
        XCTAssertEqual(tok.eosTokenId, 5)
        XCTAssertTrue(tok.isSpecial(5))
        XCTAssertEqual(tok.decode([0, 5], skipSpecialTokens: true), "a")
    }

    func testUnsupportedModel() throws {
        try expectError(replacing("tokenizer.ggml.model", with: .string("t5")), "t5",
                        ["tokenizer.ggml.model", "\"t5\"", "gpt2, llama"])
    }

    func testMissingTokens() throws {
        try expectError(replacing("tokenizer.ggml.tokens", with: nil), "notokens", ["tokenizer.ggml.tokens", "missing"])
    }

    func testTokensNotStrings() throws {
        try expectError(replacing("tokenizer.ggml.tokens", with: .array([.int(1), .int(2)])), "inttokens",
                        ["tokenizer.ggml.tokens", "an array of strings"])
    }

    func testSpecialIdOutOfRange() throws {
        try expectError(replacing("tokenizer.ggml.eos_token_id", with: .uint(99)), "eos99",
                        ["tokenizer.ggml.eos_token_id", "99", "6 tokens"])
    }

    func testMergeOfUnknownToken() throws {
        try expectError(replacing("tokenizer.ggml.merges", with: Self.strings(["a b", "Ġ zz"])), "badmerge",
                        ["tokenizer.ggml.merges[1]", "\"zz\"", "not in the vocabulary"])
    }

    func testMalformedMergeLine() throws {
        try expectError(replacing("tokenizer.ggml.merges", with: Self.strings(["ab"])), "mergeline",
                        ["tokenizer.ggml.merges[0]", "two tokens"])
    }

    func testSentencePieceWithoutScoresOrMerges() throws {
        var w = replacing("tokenizer.ggml.merges", with: nil)
        w.metadata = w.metadata.map { $0.0 == "tokenizer.ggml.model" ? ($0.0, .string("llama")) : $0 }
        try expectError(w, "noscores", ["tokenizer.ggml.scores", "merges"])
    }

    func testGemmaSentencePieceIsRejected() throws {
        var w = replacing("general.architecture", with: .string("gemma2"))
        w.metadata = w.metadata.map { $0.0 == "tokenizer.ggml.model" ? ($0.0, .string("llama")) : $0 }
        try expectError(w, "gemma", ["general.architecture", "gemma2"])
    }

    func testNotAGGUFFile() throws {
        let path = NSTemporaryDirectory() + "kvlab-\(getpid())-notgguf.gguf"
        try Data("{\"model\": {}}".utf8 + [UInt8](repeating: 32, count: 40)).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        XCTAssertThrowsError(try Tokenizer(gguf: path)) { e in
            let m = (e as? LocalizedError)?.errorDescription ?? "\(e)"
            XCTAssertTrue(m.contains(path) && m.contains("magic"), m)
        }
    }
}
