import Foundation
import XCTest
import KVTokenizer

/// Loading errors name the file and, where one is at fault, the field.
final class TokenizerErrorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvtok-errors-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Write `json` to <tmp>/<name>/tokenizer.json and return the file path.
    func write(_ json: String, name: String = "case") throws -> String {
        let folder = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let file = folder.appendingPathComponent("tokenizer.json")
        try json.write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    func loadError(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> TokenizerError? {
        do {
            _ = try Tokenizer(path: path)
            XCTFail("expected an error for \(path)", file: file, line: line)
            return nil
        } catch let e as TokenizerError {
            return e
        } catch {
            XCTFail("expected a TokenizerError, got \(error)", file: file, line: line)
            return nil
        }
    }

    static let bpeModel = #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#

    func testMissingFile() throws {
        let missing = dir.appendingPathComponent("nope/tokenizer.json").path
        let e = try XCTUnwrap(loadError(missing))
        XCTAssertEqual(e, .fileNotFound(path: missing))
        XCTAssertTrue(e.localizedDescription.contains(missing), e.localizedDescription)
    }

    func testFolderWithoutTokenizerJSON() throws {
        let e = try XCTUnwrap(loadError(dir.path))
        XCTAssertEqual(e.path, dir.appendingPathComponent("tokenizer.json").path)
        XCTAssertTrue(e.localizedDescription.contains("tokenizer.json"), e.localizedDescription)
    }

    func testInvalidJSON() throws {
        let path = try write("{\n  \"model\": {\"type\": \"BPE\",\n  \"vocab\": {\"a\": 0,}\n}")
        let e = try XCTUnwrap(loadError(path))
        guard case .invalidJSON(let p, let reason) = e else { return XCTFail("got \(e)") }
        XCTAssertEqual(p, path)
        XCTAssertTrue(reason.contains("line 3"), reason)
        XCTAssertTrue(e.localizedDescription.contains(path), e.localizedDescription)

        for bad in ["", "[1, 2", "{\"model\": tru}", "{\"a\": \"\\ud800\"}", "{} x"] {
            let p2 = try write(bad, name: "bad")
            guard case .invalidJSON? = loadError(p2) else { return XCTFail("\(bad.debugDescription) accepted") }
        }
    }

    func testUnsupportedModelType() throws {
        let path = try write(#"{"model": {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0]]}}"#)
        let e = try XCTUnwrap(loadError(path))
        XCTAssertEqual(e, .unsupported(path: path, field: "model.type", value: "Unigram", supported: ["BPE", "WordLevel"]))
        let message = e.localizedDescription
        XCTAssertTrue(message.contains(path), message)
        XCTAssertTrue(message.contains("\"Unigram\""), message)
        XCTAssertTrue(message.contains("model.type"), message)
    }

    func testMissingFields() throws {
        var e = try XCTUnwrap(loadError(try write(#"{"version": "1.0"}"#)))
        XCTAssertEqual(e.field, "model")
        e = try XCTUnwrap(loadError(try write(#"{"model": {"type": "BPE", "merges": []}}"#)))
        XCTAssertEqual(e.field, "model.vocab")
        XCTAssertTrue(e.localizedDescription.contains("missing field \"model.vocab\""), e.localizedDescription)
        e = try XCTUnwrap(loadError(try write(#"{"model": {"type": "BPE", "vocab": {}}}"#)))
        XCTAssertEqual(e.field, "model.merges")
    }

    func testInvalidFields() throws {
        var e = try XCTUnwrap(loadError(try write(
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}}"#)))
        XCTAssertEqual(e.field, "model.merges[0]")
        XCTAssertTrue(e.localizedDescription.contains("\"ab\""), e.localizedDescription)
        e = try XCTUnwrap(loadError(try write(
            #"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "ab"]}}"#)))
        XCTAssertEqual(e.field, "model.merges[1]")
        e = try XCTUnwrap(loadError(try write(#"{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}"#)))
        XCTAssertEqual(e.field, "model.vocab.a")
        e = try XCTUnwrap(loadError(try write(#"{"model": {"type": "BPE", "vocab": [], "merges": []}}"#)))
        XCTAssertEqual(e.field, "model.vocab")
    }

    func testUnsupportedComponentsNameTheirField() throws {
        var e = try XCTUnwrap(loadError(try write(
            #"{"model": \#(Self.bpeModel), "normalizer": {"type": "Precompiled", "precompiled_charsmap": ""}}"#)))
        XCTAssertEqual(e.field, "normalizer.type")
        XCTAssertTrue(e.localizedDescription.contains("unsupported normalizer \"Precompiled\""), e.localizedDescription)

        e = try XCTUnwrap(loadError(try write(#"""
            {"model": \#(Self.bpeModel), "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
              {"type": "ByteLevel", "add_prefix_space": false}, {"type": "UnicodeScripts"}]}}
            """#)))
        XCTAssertEqual(e.field, "pre_tokenizer.pretokenizers[1].type")

        e = try XCTUnwrap(loadError(try write(#"{"model": \#(Self.bpeModel), "decoder": {"type": "CTC"}}"#)))
        XCTAssertEqual(e.field, "decoder.type")

        e = try XCTUnwrap(loadError(try write(
            #"{"model": \#(Self.bpeModel), "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}}"#)))
        XCTAssertEqual(e.field, "pre_tokenizer.pattern.Regex")
    }

    /// The smallest valid files load and behave (inline JSON, untagged model).
    func testMinimalFiles() throws {
        let bpe = try Tokenizer(jsonData: Data(#"{"model": \#(Self.bpeModel)}"#.utf8))
        XCTAssertEqual(bpe.encode("abba"), [2, 1, 0])
        XCTAssertEqual(bpe.decode([2, 1, 0]), "ab b a")  // no decoder: tokens joined by spaces
        XCTAssertEqual(bpe.vocabularySize, 3)
        XCTAssertNil(bpe.bosTokenId)

        let untagged = try Tokenizer(jsonData: Data(#"{"model": {"vocab": {"[UNK]": 0, "hi": 1}, "unk_token": "[UNK]"}, "pre_tokenizer": {"type": "WhitespaceSplit"}}"#.utf8))
        XCTAssertEqual(untagged.modelType, "WordLevel")
        XCTAssertEqual(untagged.encode("hi there  hi"), [1, 0, 1])
        XCTAssertEqual(untagged.encode(""), [])
    }
}
