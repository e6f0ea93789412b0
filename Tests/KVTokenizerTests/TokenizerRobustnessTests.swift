import Foundation
import XCTest
@testable import KVTokenizer

/// Issue 16: every loop over untrusted input is bounded. A tokenizer.json regex that backtracks
/// exponentially is stopped with an error naming the file, field and pattern.
final class TokenizerRobustnessTests: XCTestCase {
    static func splitTokenizer(_ pattern: String) throws -> Tokenizer {
        let escaped = pattern.replacingOccurrences(of: "\\", with: "\\\\")
        let json = """
        {"model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "!": 2}, "unk_token": "[UNK]"},
         "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\(escaped)"}, "behavior": "Isolated", "invert": false}}
        """
        return try Tokenizer(jsonData: Data(json.utf8), name: "evil/tokenizer.json")
    }

    func testCatastrophicBacktrackingIsStoppedWithAnError() throws {
        let t = try Self.splitTokenizer(#"(\w+\s?)*$"#)
        XCTAssertEqual(try t.encodeChecked("a a !"), try t.encodeChecked("a a !"), "short inputs are fine")
        let start = Date()
        XCTAssertThrowsError(try t.encodeChecked(String(repeating: "a", count: 200) + "!")) { error in
            guard let e = error as? TokenizerWorkLimitError else { return XCTFail("\(error)") }
            XCTAssertEqual(e.pattern, #"(\w+\s?)*$"#)
            XCTAssertEqual(e.inputLength, 201)
            XCTAssertTrue(e.localizedDescription.contains("evil/tokenizer.json") && e.localizedDescription.contains("pre_tokenizer.pattern.Regex"),
                          e.localizedDescription)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 20, "bounded, not exponential")
        // The scope reports the first failure of any encode inside it.
        XCTAssertThrowsError(try TokenizerWorkLimit.check { _ = t.encode("a a"); _ = t.encode(String(repeating: "a", count: 100) + "!") })
    }

    /// Ordinary patterns on long text stay far below the limit (GPT-2's pre-tokenizer regex here).
    func testOrdinaryPatternsAreNotStopped() throws {
        let gpt2 = try Self.splitTokenizer(#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)
        let text = String(repeating: "In the beginning God created the heaven and the earth, 1:1. ", count: 4000)   // 240 KB
        let ids = try gpt2.encodeChecked(text)
        XCTAssertGreaterThan(ids.count, 40_000)
    }

    /// An empty vocabulary encodes to nothing, in linear time (no loop waits for a token).
    func testEmptyVocabularyEncodesToNothing() throws {
        let json = #"{"model": {"type": "WordLevel", "vocab": {}}, "pre_tokenizer": {"type": "Whitespace"}}"#
        let t = try Tokenizer(jsonData: Data(json.utf8))
        XCTAssertEqual(try t.encodeChecked(String(repeating: "word ", count: 10_000)), [])
    }
}
