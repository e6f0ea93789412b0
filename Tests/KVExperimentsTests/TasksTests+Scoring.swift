import Foundation
import XCTest
@testable import KVExperiments
import KVTokenizer

extension TasksTests {
    func testPasskeyScorerFirstInteger() {
        let plain = TaskSample(context: [], answers: ["12345"], meta: ["spaced_digits": 0])
        let spaced = TaskSample(context: [], answers: ["12345"], meta: ["spaced_digits": 1])
        let score = TaskFactory.scorer(for: .passkey)!
        XCTAssertEqual(score(" 12345. Remember it.", plain), 1)
        XCTAssertEqual(score("The pass key is 12345", plain), 1)
        XCTAssertEqual(score("12 345", plain), 0, "plain style: the first integer is 12")
        XCTAssertEqual(score("12 345", spaced), 1)
        XCTAssertEqual(score(" 1 2 3 4 5 . remember", spaced), 1)
        XCTAssertEqual(score("1 2 3 4 5 6", spaced), 0)
        XCTAssertEqual(score("1  2345", spaced), 0, "two spaces end the number")
        XCTAssertEqual(score("123456", plain), 0)
        XCTAssertEqual(score("012345", plain), 1, "compared as numbers")
        XCTAssertEqual(score("no digits", plain), 0)
        XCTAssertEqual(score("54321 12345", plain), 0, "only the first integer counts")
        XCTAssertEqual(TaskScoring.firstInteger("a 1 2, 3", joinSpacedDigits: true), "12")
        XCTAssertNil(TaskFactory.scorer(for: .mqar)); XCTAssertNil(TaskFactory.scorer(for: .fidelity))
        XCTAssertNil(TaskFactory.scorer(for: .perplexity))
    }

    func testStringMatchAllAndRouge() {
        XCTAssertEqual(TaskScoring.stringMatchAll("apple and BANANA", references: ["Apple", "banana", "cherry"]), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(TaskScoring.stringMatchAll("nothing", references: []), 0)
        XCTAssertEqual(TaskScoring.stringMatchAll("1 2 3 4 5 6 7", references: ["1234567"], joinSpacedDigits: true), 1)
        // the cat sat on the mat / the cat is on the mat: overlap the x2, cat, on, mat = 5 of 6 each.
        XCTAssertEqual(TaskFactory.rouge1F("the cat sat on the mat", "the cat is on the mat"), 5.0 / 6, accuracy: 1e-12)
        // 3 of 3 candidate tokens, 3 of 12 reference tokens: P = 1, R = 0.25, F = 0.4.
        XCTAssertEqual(TaskFactory.rouge1F("Eat a sandwich!", "eat a sandwich and sit in Dolores Park on a sunny day"), 0.4, accuracy: 1e-12)
        XCTAssertEqual(TaskFactory.rouge1F("", "x"), 0)
        XCTAssertEqual(TaskFactory.rouge1F("a b", "c d"), 0)
        XCTAssertEqual(TaskFactory.rouge1F("Same, words.", "same words"), 1, accuracy: 1e-12)

        let needle = TaskSample(context: [], answers: ["eat a sandwich and sit in Dolores Park on a sunny day"])
        let full = TaskFactory.scores(for: .needle, output: " Eat a sandwich and sit in Dolores Park on a sunny day.", sample: needle)!
        XCTAssertEqual(full.score, 1); XCTAssertEqual(full.extra["rouge1_f"]!, 1, accuracy: 1e-12)
        let part = TaskFactory.scores(for: .needle, output: "eat a sandwich", sample: needle)!
        XCTAssertEqual(part.score, 0); XCTAssertEqual(part.extra["rouge1_f"]!, 0.4, accuracy: 1e-12)
    }

    // MARK: - Prompt styles

    func testSpacedDigitStyleFromJSON() throws {
        let json = """
            { "name": "word-level", "digits": "spaced",
              "filler": "the grass is green . the sky is blue .",
              "passkey": { "task": "find the key .", "needle": "the key is {K} . remember {K} .", "question": "the key is" } }
            """
        let path = try tempFile(json, name: "tasks.json")
        let style = try PromptStyle.load(path: path)
        XCTAssertEqual(style.digits, .spaced)
        XCTAssertTrue(style.joinSpacedDigits)
        XCTAssertEqual(style.number(40512), "4 0 5 1 2")
        XCTAssertEqual(try PromptStyle.forModel(directory: (path as NSString).deletingLastPathComponent), style)
        XCTAssertEqual(try PromptStyle.forModel(directory: "/nonexistent"), .standard)

        let codec = WordCodec(splitDigits: true)
        let s = try TaskFactory.sample(TaskSpec(kind: .passkey, context: 300, seed: 1, depth: 0.3), index: 0,
                                       codec: codec, vocabularySize: vocab, options: TaskOptions(style: style))
        let key = Int(s.meta["key"]!)
        let digits = style.number(key)
        XCTAssertTrue(codec.decode(s.context).hasPrefix("find the key . \n the grass is green ."))
        XCTAssertTrue(codec.decode(s.context).contains("the key is \(digits) . remember \(digits) ."))
        XCTAssertEqual(codec.decode(s.suffix), "the key is")
        XCTAssertEqual(s.meta["spaced_digits"], 1)
        XCTAssertEqual(TaskFactory.scorer(for: .passkey)!(" " + digits + " .", s), 1)

        let bad = try tempFile(#"{ "digits": "roman" }"#, name: "bad.json")
        XCTAssertThrowsError(try PromptStyle.load(path: bad)) { XCTAssertTrue("\($0)".contains(bad)) }
    }

    /// models/kvlab-retrieval ships a word-level tokenizer and a tasks.json (its prompt style, with a
    /// worked example in "doc"); our rendering must reproduce that example id for id.
    func testRetrievalModelPromptMatchesItsTasksJSON() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("models/kvlab-retrieval").path
        let tasksJSON = dir + "/tasks.json"
        guard FileManager.default.fileExists(atPath: tasksJSON),
              FileManager.default.fileExists(atPath: dir + "/tokenizer.json") else {
            throw XCTSkip("models/kvlab-retrieval is not there")
        }
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: tasksJSON))) as? [String: Any])
        guard let example = (json["doc"] as? [String: Any])?["example"] as? [String: Any] else {
            throw XCTSkip("tasks.json has no doc.example")
        }
        let style = try PromptStyle.forModel(directory: dir)
        XCTAssertEqual(style.name, "kvlab-retrieval")
        XCTAssertTrue(style.joinSpacedDigits)
        // The tokenizer as tasks.json describes it: its post-processor prepends <s>.
        let tokenizer = try Tokenizer(path: dir + "/tokenizer.json")
        struct WithSpecials: TextCodec {
            let tokenizer: Tokenizer
            func encode(_ text: String) -> [Int] { tokenizer.encode(text, addSpecialTokens: true) }
            func decode(_ ids: [Int]) -> String { tokenizer.decode(ids, skipSpecialTokens: true) }
        }
        let ids = try XCTUnwrap(example["ids"] as? [Int])
        let target = try XCTUnwrap(example["target_tokens"] as? Int), depth = try XCTUnwrap(example["depth"] as? Double)
        let key = try XCTUnwrap(example["key"] as? Int)
        // The same ids from a codec that emits <s> and from one that does not, given "bos": 1.
        var withBOS = style; withBOS.bos = 1
        for (codec, style) in [(WithSpecials(tokenizer: tokenizer) as TextCodec, style),
                               (try XCTUnwrap(try TokenizerCodec.load(directory: dir)), withBOS)] {
            let shared = try TaskFactory.Shared(TaskSpec(kind: .passkey, context: target), codec: codec, vocabularySize: 128,
                                                options: TaskOptions(style: style), modelName: "kvlab-retrieval")
            let s = try PasskeyTask.build(key: key, depth: depth, context: target, shared: shared)
            XCTAssertEqual(s.context + s.suffix, ids)
            if let q = example["question_starts_at"] as? Int { XCTAssertEqual(s.context.count, q) }
            if let n = example["needle_starts_at"] as? Int { XCTAssertEqual(s.meta["needle_position"], Double(n)) }
        }
        if let text = example["text"] as? String { XCTAssertEqual(WithSpecials(tokenizer: tokenizer).encode(text), ids) }

        // Every grid sample fits, and the model's answer (digit tokens, then ".") scores 1.
        let codec = WithSpecials(tokenizer: tokenizer)
        for kind in [TaskKind.passkey, .needle] {
            let grid = TaskSpec(kind: kind, context: 700, samples: 10, seed: 4)
            for sample in try TaskFactory.samples(grid, codec: codec, vocabularySize: 128, options: TaskOptions(style: style)) {
                let all = sample.context + sample.suffix
                XCTAssertLessThanOrEqual(all.count, 700); XCTAssertGreaterThanOrEqual(all.count, 698)
                XCTAssertEqual(all[0], 1, "starts with <s>")
                XCTAssertFalse(all.contains(0), "no <unk>")
                let answer = codec.decode(codec.encode(sample.answers[0] + "."))
                XCTAssertTrue(answer.hasPrefix(sample.answers[0].map(String.init).joined(separator: " ")), answer)
                XCTAssertEqual(TaskFactory.scorer(for: kind)!(answer, sample), 1, answer)
            }
        }
    }

    func testSeedDerivationIsPinned() throws {
        // Platform-independent golden values: results files record seeds only, so these must not
        // change (a change regenerates different prompts for old configs).
        XCTAssertEqual(TaskFactory.sampleSeed(0, index: 0), 8_468_297_219_712_610_898)
        XCTAssertEqual(TaskFactory.sampleSeed(42, index: 3), 10_097_467_454_155_217_104)
        XCTAssertNotEqual(TaskFactory.sampleSeed(0, index: 1), TaskFactory.sampleSeed(1, index: 0))
        let passkey = try TaskFactory.sample(TaskSpec(kind: .passkey, context: 300, seed: 42), index: 3,
                                             codec: WordCodec(), vocabularySize: vocab)
        XCTAssertEqual(passkey.meta["key"], 2465)
        let mqar = try TaskFactory.sample(TaskSpec(kind: .mqar, context: 16, seed: 42), index: 3, codec: nil, vocabularySize: 64)
        XCTAssertEqual(mqar.context, [5, 43, 28, 51, 29, 33, 21, 34])
        XCTAssertEqual(mqar.suffix, [21, 34, 28, 6, 29, 18, 5, 17])
    }
}
