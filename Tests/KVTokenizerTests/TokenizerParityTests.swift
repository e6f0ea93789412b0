import Foundation
import XCTest
import KVTokenizer

/// Exact parity with the Hugging Face `tokenizers` library on the fixtures written
/// by scripts/fixtures/make_tokenizer_fixtures.py (see its docstring for the cases).
final class TokenizerParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static let allCases = ["gpt2_bpe", "roberta_bpe", "smollm_bpe", "llama3_bpe", "qwen2_bpe",
                           "llama2_sp", "llama2_metaspace", "sp_metaspace_split", "wordlevel", "wordlevel_split"]

    struct Expected {
        struct Sample {
            let text: String
            let ids: [Int]
            let idsWithSpecial: [Int]
            let decoded: String
            let decodedWithSpecial: String
            let decodedSkipSpecial: String
        }
        struct ExtraDecode {
            let ids: [Int]
            let skipSpecial: Bool
            let text: String
        }
        let vocabSize: Int
        let bos: Int?
        let eos: Int?
        let samples: [Sample]
        let extraDecodes: [ExtraDecode]
    }

    static func loadExpected(_ name: String) throws -> Expected {
        let url = fixtures.appendingPathComponent(name).appendingPathComponent("expected.json")
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        func ints(_ v: Any?) -> [Int] { (v as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? [] }
        let samples = (obj["samples"] as? [[String: Any]] ?? []).map { s in
            Expected.Sample(text: s["text"] as? String ?? "", ids: ints(s["ids"]),
                            idsWithSpecial: ints(s["ids_with_special"]),
                            decoded: s["decoded"] as? String ?? "",
                            decodedWithSpecial: s["decoded_with_special"] as? String ?? "",
                            decodedSkipSpecial: s["decoded_skip_special"] as? String ?? "")
        }
        let extras = (obj["extra_decodes"] as? [[String: Any]] ?? []).map { e in
            Expected.ExtraDecode(ids: ints(e["ids"]), skipSpecial: (e["skip_special_tokens"] as? Bool) ?? false,
                                 text: e["text"] as? String ?? "")
        }
        return Expected(vocabSize: (obj["vocab_size"] as? NSNumber)?.intValue ?? -1,
                        bos: (obj["bos_token_id"] as? NSNumber)?.intValue,
                        eos: (obj["eos_token_id"] as? NSNumber)?.intValue,
                        samples: samples, extraDecodes: extras)
    }

    /// Byte-exact string comparison (`==` on String is canonical equivalence).
    static func same(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }

    func checkParity(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let folder = Self.fixtures.appendingPathComponent(name)
        let tok = try Tokenizer(path: folder.path)
        let expected = try Self.loadExpected(name)
        XCTAssertGreaterThan(expected.samples.count, 20, "\(name): too few samples", file: file, line: line)

        XCTAssertEqual(tok.vocabularySize, expected.vocabSize, "\(name): vocabularySize", file: file, line: line)
        XCTAssertEqual(tok.bosTokenId, expected.bos, "\(name): bosTokenId", file: file, line: line)
        XCTAssertEqual(tok.eosTokenId, expected.eos, "\(name): eosTokenId", file: file, line: line)

        var failures = 0
        for s in expected.samples {
            let label = "\(name) \(s.text.debugDescription.prefix(80))"
            let ids = tok.encode(s.text)
            let idsSpecial = tok.encode(s.text, addSpecialTokens: true)
            if ids != s.ids {
                failures += 1
                XCTFail("\(label): encode\n got      \(ids)\n expected \(s.ids)", file: file, line: line)
            }
            if idsSpecial != s.idsWithSpecial {
                failures += 1
                XCTFail("\(label): encode(addSpecialTokens)\n got      \(idsSpecial)\n expected \(s.idsWithSpecial)",
                        file: file, line: line)
            }
            let checks: [(String, String, String)] = [
                ("decode(ids)", tok.decode(s.ids), s.decoded),
                ("decode(ids_with_special)", tok.decode(s.idsWithSpecial), s.decodedWithSpecial),
                ("decode(ids_with_special, skip)", tok.decode(s.idsWithSpecial, skipSpecialTokens: true),
                 s.decodedSkipSpecial),
            ]
            for (what, got, want) in checks where !Self.same(got, want) {
                failures += 1
                XCTFail("\(label): \(what)\n got      \(got.debugDescription)\n expected \(want.debugDescription)",
                        file: file, line: line)
            }
        }
        for e in expected.extraDecodes {
            let got = tok.decode(e.ids, skipSpecialTokens: e.skipSpecial)
            if !Self.same(got, e.text) {
                failures += 1
                XCTFail("\(name): decode(\(e.ids), skip: \(e.skipSpecial))\n got      \(got.debugDescription)\n expected \(e.text.debugDescription)",
                        file: file, line: line)
            }
        }
        XCTAssertEqual(failures, 0, "\(name): \(failures) mismatches", file: file, line: line)

        // id <-> token round trip over the whole vocabulary.
        for id in 0..<tok.vocabularySize {
            guard let t = tok.token(of: id) else { continue }
            XCTAssertEqual(tok.id(of: t), id, "\(name): id(of: token(of: \(id)))", file: file, line: line)
        }
        XCTAssertNil(tok.token(of: tok.vocabularySize))
        XCTAssertNil(tok.token(of: -1))
    }

    func testGPT2() throws { try checkParity("gpt2_bpe") }
    func testRoberta() throws { try checkParity("roberta_bpe") }
    func testSmolLM() throws { try checkParity("smollm_bpe") }
    func testLlama3() throws { try checkParity("llama3_bpe") }
    func testQwen2() throws { try checkParity("qwen2_bpe") }
    func testLlama2SentencePiece() throws { try checkParity("llama2_sp") }
    func testLlama2Metaspace() throws { try checkParity("llama2_metaspace") }
    func testMetaspaceSplit() throws { try checkParity("sp_metaspace_split") }
    func testWordLevel() throws { try checkParity("wordlevel") }
    func testWordLevelSplit() throws { try checkParity("wordlevel_split") }

    /// Every fixture folder is covered by a test method above (files beside them, like
    /// chat_templates.json of ChatTemplateTests, are not tokenizer fixtures).
    func testAllFixturesCovered() throws {
        var isDir: ObjCBool = false
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.fixtures.path)
            .filter { !$0.hasPrefix(".") && $0 != "gguf" }   // gguf/: GGUFTokenizerTests
            .filter { FileManager.default.fileExists(atPath: Self.fixtures.appendingPathComponent($0).path, isDirectory: &isDir) && isDir.boolValue }
            .sorted()
        XCTAssertEqual(names, Self.allCases.sorted())
    }

    /// A path to the tokenizer.json file works as well as its folder.
    func testFileAndFolderPaths() throws {
        let folder = Self.fixtures.appendingPathComponent("llama3_bpe")
        let a = try Tokenizer(path: folder.path)
        let b = try Tokenizer(path: folder.appendingPathComponent("tokenizer.json").path)
        XCTAssertEqual(a.encode("Hello world", addSpecialTokens: true), b.encode("Hello world", addSpecialTokens: true))
        XCTAssertEqual(b.path, folder.appendingPathComponent("tokenizer.json").path)
        XCTAssertEqual(a.modelType, "BPE")
        XCTAssertEqual(a.bosTokenId, a.id(of: "<|begin_of_text|>"))
        XCTAssertTrue(a.isSpecial(a.bosTokenId!))
        XCTAssertFalse(a.isSpecial(a.encode("Hello")[0]))
    }

    /// Byte-level models are lossless: decode(encode(x)) == x, and encode is fast
    /// (well under a second for 100K characters in release builds).
    func testLongTextRoundTripAndSpeed() throws {
        var text = ""
        let parts = ["The KV cache grows with every token; ", "café naïve 日本語 👩‍👩‍👧 ", "1234567 3.14159 ",
                     "don't I'LL   \t\n\n", "def f(x):\n    return x**2\n", "Привет мир "]
        var i = 0
        while text.unicodeScalars.count < 100_000 {
            text += parts[i % parts.count] + "word\(i) "
            i += 1
        }
        for name in ["gpt2_bpe", "llama3_bpe", "qwen2_bpe", "llama2_sp"] {
            let tok = try Tokenizer(path: Self.fixtures.appendingPathComponent(name).path)
            let start = Date()
            let ids = tok.encode(text)
            let seconds = Date().timeIntervalSince(start)
            print("\(name): encoded \(text.unicodeScalars.count) characters into \(ids.count) ids in \(String(format: "%.3f", seconds)) s")
            let decoded = tok.decode(ids)
            XCTAssertTrue(Self.same(decoded, text), "\(name): decode(encode(text)) differs")
            #if DEBUG
            XCTAssertLessThan(seconds, 20)
            #else
            XCTAssertLessThan(seconds, 1)
            #endif
        }
    }

    /// One tokenizer can be used from several threads at once.
    func testConcurrentEncode() throws {
        let tok = try Tokenizer(path: Self.fixtures.appendingPathComponent("gpt2_bpe").path)
        let texts = (0..<64).map { "thread \($0): the quick brown fox \($0 * 7919) café 😀" }
        let expected = texts.map { tok.encode($0) }
        let lock = NSLock()
        var results = [[Int]](repeating: [], count: texts.count)
        DispatchQueue.concurrentPerform(iterations: texts.count) { i in
            let ids = tok.encode(texts[i])
            lock.lock()
            results[i] = ids
            lock.unlock()
        }
        XCTAssertEqual(results, expected)
    }

    /// bos_token / eos_token in a tokenizer_config.json beside the file take precedence.
    func testTokenizerConfigNamesBosAndEos() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvtok-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.copyItem(at: Self.fixtures.appendingPathComponent("llama3_bpe/tokenizer.json"),
                                         to: dir.appendingPathComponent("tokenizer.json"))
        let config = #"{"bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|eot_id|>"}"#
        try config.write(to: dir.appendingPathComponent("tokenizer_config.json"), atomically: true, encoding: .utf8)
        let tok = try Tokenizer(path: dir.path)
        XCTAssertEqual(tok.bosTokenId, tok.id(of: "<|begin_of_text|>"))
        XCTAssertEqual(tok.eosTokenId, tok.id(of: "<|eot_id|>"))
        XCTAssertNotEqual(tok.eosTokenId, tok.id(of: "<|end_of_text|>"))
    }
}
