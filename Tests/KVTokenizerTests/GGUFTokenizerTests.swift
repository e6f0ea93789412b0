import Foundation
import XCTest
import KVGGUF
@testable import KVTokenizer

/// Parity with transformers' GGUF tokenizer (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`)
/// on the files and ids written by scripts/fixtures/make_gguf_tokenizer_fixtures.py.
final class GGUFTokenizerTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures").appendingPathComponent("gguf")
    static let realModel = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models/SmolLM2-135M-Instruct.Q4_1.gguf").path

    struct Expected {
        struct Sample { let text: String; let ids: [Int]; let idsPlain: [Int]; let decoded: String; let decodedSkip: String }
        let bos: Int?
        let eos: Int?
        let addBOS: Bool
        let addEOS: Bool
        let specialIds: [Int]
        let added: [(id: Int, content: String, special: Bool)]
        let chatTemplate: String?
        let samples: [Sample]
    }

    static func expected(_ name: String) throws -> Expected {
        let url = folder.appendingPathComponent(name + ".expected.json")
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        func ints(_ v: Any?) -> [Int] { (v as? [Any])?.compactMap { ($0 as? NSNumber)?.intValue } ?? [] }
        let samples = (obj["samples"] as? [[String: Any]] ?? []).map { s in
            Expected.Sample(text: s["text"] as? String ?? "", ids: ints(s["ids"]), idsPlain: ints(s["ids_plain"]),
                            decoded: s["decoded"] as? String ?? "", decodedSkip: s["decoded_skip"] as? String ?? "")
        }
        let added = (obj["added"] as? [[Any]] ?? []).map { a in
            (id: (a[0] as? NSNumber)?.intValue ?? -1, content: a[1] as? String ?? "", special: a[2] as? Bool ?? false)
        }
        return Expected(bos: (obj["bos_token_id"] as? NSNumber)?.intValue, eos: (obj["eos_token_id"] as? NSNumber)?.intValue,
                        addBOS: obj["add_bos_token"] as? Bool ?? false, addEOS: obj["add_eos_token"] as? Bool ?? false,
                        specialIds: ints(obj["special_ids"]), added: added, chatTemplate: obj["chat_template"] as? String,
                        samples: samples)
    }

    static func same(_ a: String, _ b: String) -> Bool { Array(a.utf8) == Array(b.utf8) }

    /// Compares every sample; returns (texts, characters, ids) compared.
    @discardableResult
    func checkParity(_ tok: Tokenizer, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> (Int, Int, Int) {
        let e = try Self.expected(name)
        XCTAssertGreaterThan(e.samples.count, 50, "\(name): too few samples", file: file, line: line)
        XCTAssertGreaterThan(e.samples.reduce(0) { $0 + $1.text.unicodeScalars.count }, 2000, file: file, line: line)
        XCTAssertEqual(tok.bosTokenId, e.bos, "\(name): bosTokenId", file: file, line: line)
        XCTAssertEqual(tok.eosTokenId, e.eos, "\(name): eosTokenId", file: file, line: line)
        XCTAssertEqual(tok.addsBOS, e.addBOS, "\(name): add_bos_token", file: file, line: line)
        XCTAssertEqual(tok.addsEOS, e.addEOS, "\(name): add_eos_token", file: file, line: line)
        for id in e.specialIds { XCTAssertTrue(tok.isSpecial(id), "\(name): id \(id) should be special", file: file, line: line) }
        for a in e.added {
            XCTAssertEqual(tok.id(of: a.content), a.id, "\(name): added token \(a.content)", file: file, line: line)
            XCTAssertEqual(tok.isSpecial(a.id), a.special, "\(name): added token \(a.content) special", file: file, line: line)
        }
        var failures = 0, chars = 0, ids = 0
        for s in e.samples {
            let label = "\(name) \(s.text.debugDescription.prefix(80))"
            chars += s.text.unicodeScalars.count
            ids += s.ids.count
            let got = tok.encode(s.text, addSpecialTokens: true)
            let plain = tok.encode(s.text)
            if got != s.ids { failures += 1; XCTFail("\(label): encode\n got      \(got)\n expected \(s.ids)", file: file, line: line) }
            if plain != s.idsPlain { failures += 1; XCTFail("\(label): encode(no specials)\n got      \(plain)\n expected \(s.idsPlain)", file: file, line: line) }
            let d = tok.decode(s.ids), ds = tok.decode(s.ids, skipSpecialTokens: true)
            if !Self.same(d, s.decoded) { failures += 1; XCTFail("\(label): decode\n got      \(d.debugDescription)\n expected \(s.decoded.debugDescription)", file: file, line: line) }
            if !Self.same(ds, s.decodedSkip) { failures += 1; XCTFail("\(label): decode(skip)\n got      \(ds.debugDescription)\n expected \(s.decodedSkip.debugDescription)", file: file, line: line) }
            if failures > 12 { XCTFail("\(name): stopping after \(failures) mismatches", file: file, line: line); break }
        }
        return (e.samples.count, chars, ids)
    }

    func fixture(_ name: String) throws -> Tokenizer {
        try Tokenizer(gguf: Self.folder.appendingPathComponent(name + ".gguf").path)
    }

    func testSentencePieceLlama() throws {
        let tok = try fixture("llama_spm")
        try checkParity(tok, "llama_spm")
        XCTAssertEqual(tok.encode("Hi", addSpecialTokens: true).first, 1, "add_bos_token: BOS first")
        XCTAssertNotNil(tok.chatTemplate)
    }

    func testSentencePieceFlags() throws {
        // No add_bos_token key (llama defaults to BOS), add_eos_token true, add_space_prefix false (ignored).
        let tok = try fixture("llama_spm_flags")
        try checkParity(tok, "llama_spm_flags")
        XCTAssertEqual(tok.encode("Hi", addSpecialTokens: true).last, 2, "add_eos_token: EOS last")
    }

    func testByteLevelPreTokenizers() throws {
        for pre in ["gpt_2", "llama_bpe", "qwen2", "gpt_4o", "tekken"] {
            try checkParity(try fixture("gpt2_" + pre), "gpt2_" + pre)
        }
    }

    func testByteLevelAddedTokens() throws {
        let tok = try fixture("gpt2_gpt_2")
        // A user-defined token with a real space is respelled (Ġ) into the vocabulary, not added:
        // the text is split by the regex like any other.
        XCTAssertNotNil(tok.id(of: "<toolĠcall>"))
        XCTAssertNotEqual(tok.encode("<tool call>"), [tok.id(of: "<toolĠcall>")!])
        XCTAssertEqual(tok.encode("<think>x</think>").first, tok.id(of: "<think>"))
        XCTAssertFalse(tok.isSpecial(tok.id(of: "<think>")!))
        XCTAssertTrue(tok.isSpecial(tok.id(of: "<|im_end|>")!))
    }

    /// Every fixture file is covered by a test above.
    func testAllFixturesCovered() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.folder.path).filter { !$0.hasPrefix(".") }.sorted()
        let cases = ["llama_spm", "llama_spm_flags"] + ["gpt_2", "llama_bpe", "qwen2", "gpt_4o", "tekken"].map { "gpt2_" + $0 }
        XCTAssertEqual(names, (cases.flatMap { [$0 + ".gguf", $0 + ".expected.json"] } + ["smollm2_q4_1.expected.json"]).sorted())
    }

    /// The regex table covers transformers' GGUF_PRE_TOKENIZER_SPLITS (a missing entry would
    /// silently fall back to GPT-2's regex); each pattern compiles.
    func testSplitTable() throws {
        XCTAssertEqual(GGUFPreTokenizer.splits.count, 23)
        XCTAssertNil(GGUFPreTokenizer.splitPattern("smollm"))
        XCTAssertEqual(GGUFPreTokenizer.splitPattern("llama-bpe"), GGUFPreTokenizer.llama3)
        for (_, p) in GGUFPreTokenizer.splits { XCTAssertNoThrow(try OnigRegex(pattern: p)) }
    }

    /// generate_merges on a hand-checked vocabulary: higher score first, then longer left part.
    func testDerivedMerges() {
        let tokens = ["a", "b", "c", "ab", "bc", "abc"]
        let scores: [Double] = [0, 0, 0, -1, -2, -3]
        let merges = SentencePieceMerges.derive(tokens: tokens, scores: scores)
        // transformers' generate_merges gives the same for these inputs.
        XCTAssertEqual(merges.map { "\($0.0) \($0.1)" }, ["a b", "b c", "ab c", "a bc"])
    }

    /// SmolLM2-135M-Instruct Q4_1 (models/, gitignored): skipped without it unless
    /// KVLAB_REQUIRE_REAL_MODEL=1.
    func testRealModel() throws {
        guard FileManager.default.fileExists(atPath: Self.realModel) else {
            if ProcessInfo.processInfo.environment["KVLAB_REQUIRE_REAL_MODEL"] == "1" {
                XCTFail("\(Self.realModel) is missing and KVLAB_REQUIRE_REAL_MODEL=1 (bash scripts/fetch_model.sh)")
                return
            }
            throw XCTSkip("\(Self.realModel) is missing (bash scripts/fetch_model.sh)")
        }
        let tok = try Tokenizer(gguf: Self.realModel)
        let (texts, chars, ids) = try checkParity(tok, "smollm2_q4_1")
        let e = try Self.expected("smollm2_q4_1")
        XCTAssertEqual(tok.chatTemplate, e.chatTemplate)
        XCTAssertEqual(tok.vocabularySize, 49152)
        XCTAssertEqual(tok.id(of: "<|im_start|>"), 1)
        XCTAssertEqual(tok.specialTokenIds, Set(0...16))
        XCTAssertEqual(tok.unknownTokenId, 0)
        XCTAssertEqual(tok.paddingTokenId, 2)
        print("GGUF tokenizer parity on \(Self.realModel): \(texts) texts, \(chars) characters, \(ids) ids")
    }
}
