import Foundation
import XCTest
@testable import KVExperiments
import KVTokenizer

/// A byte-level codec (ids = UTF-8 bytes) with a chat template: tokenization composes, so a
/// prompt's text can be read back exactly.
struct ByteCodec: TextCodec {
    var chatTemplate: String?
    func encode(_ text: String) -> [Int] { text.utf8.map(Int.init) }
    func decode(_ ids: [Int]) -> String { String(decoding: ids.map(UInt8.init), as: UTF8.self) }
}

/// Generation control (docs/tasks.md, "Generation"): chat templates around task prompts, stop
/// strings, per-task decode lengths, the generated text in the results, and run keys that change
/// only when a task sets them.
final class GenerationControlTests: XCTestCase {
    static let smolTemplate = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

    func testChatTemplateWrapsThePromptLikeRULER() throws {
        let codec = ByteCodec(chatTemplate: Self.smolTemplate)
        let spec = TaskSpec(kind: .passkey, context: 900, samples: 2, seed: 3)
        let chat = try ChatFormat(template: Self.smolTemplate)
        let raw = try TaskFactory.samples(spec, codec: codec, vocabularySize: 256)
        let wrapped = try TaskFactory.samples(spec, codec: codec, vocabularySize: 256, options: TaskOptions(chat: chat))
        for (r, w) in zip(raw, wrapped) {
            let text = codec.decode(w.context + w.suffix)
            XCTAssertLessThanOrEqual(w.context.count + w.suffix.count, 900)
            XCTAssertTrue(text.hasPrefix("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nThere is an important info hidden"), text)
            // The question stays in the user turn; the answer prefix follows the generation prompt.
            XCTAssertTrue(text.hasSuffix("What is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is"), text)
            XCTAssertEqual(codec.decode(w.suffix), "What is the pass key?<|im_end|>\n<|im_start|>assistant\nThe pass key is")
            // Marks move with their text: the needle still starts at its token.
            let needleAt = Int(w.meta["needle_position"]!)
            XCTAssertTrue(codec.decode(Array((w.context + w.suffix)[needleAt...])).hasPrefix("The pass key is \(w.answers[0])."))
            // The raw prompt is unchanged (chat_template: false is the default).
            XCTAssertTrue(codec.decode(r.context + r.suffix).hasSuffix("\nWhat is the pass key? The pass key is"))
            XCTAssertEqual(r.answers, w.answers)
        }
        // RULER's question / answer-prefix split (niah.py: the template, then the answer prefix).
        let niah = try TaskFactory.samples(TaskSpec(kind: .niahSingle, context: 900, samples: 1), codec: codec,
                                           vocabularySize: 256, options: TaskOptions(chat: chat))[0]
        XCTAssertTrue(codec.decode(niah.suffix).hasSuffix("mentioned in the provided text?<|im_end|>\n<|im_start|>assistant\nThe special magic number for \(codec.decode(niah.suffix).components(separatedBy: "for ")[1].components(separatedBy: " mentioned")[0]) mentioned in the provided text is"))
    }

    func testTemplatesThatChangeTheMessageOrAreMissingAreRefused() throws {
        XCTAssertThrowsError(try ChatFormat(template: "{{ messages[0]['content'] | upper }}")) { e in
            XCTAssertTrue("\(e)".contains("changes the user message"), "\(e)")
        }
        XCTAssertThrowsError(try ChatFormat(template: "{% for m in messages %}{{ m.role }}{% endfor %}")) { e in
            XCTAssertTrue("\(e)".contains("does not print the user message"), "\(e)")
        }
        let c = try ExperimentConfig.parse(config(output: "x.h5", taskExtra: "    chat_template: true\n"), file: "g.yaml")
        XCTAssertThrowsError(try SweepRunner.taskOptions(c.tasks[0], style: .standard, codec: ByteCodec(chatTemplate: nil))) { e in
            XCTAssertTrue("\(e)".contains("ships no chat template"), "\(e)")
        }
    }

    func testGenerationSettingsEnterTheKeyOnlyWhenSet() throws {
        let plain = try ExperimentConfig.parse(config(output: "x.h5"), file: "g.yaml")
        XCTAssertFalse(plain.grid[0].key.contains("max_new_tokens"))
        XCTAssertTrue(plain.grid[0].key.hasSuffix("\"eval_tokens\": 32, \"suffix\": \"decode\"}, \"policy\": \"full\"}"), plain.grid[0].key)
        let set = try ExperimentConfig.parse(config(output: "x.h5", taskExtra: "    max_new_tokens: 4\n    stop: \"\\n\"\n    chat_template: true\n"), file: "g.yaml")
        XCTAssertEqual(set.tasks[0].maxNewTokens, 4)
        XCTAssertEqual(set.tasks[0].stop, ["\n"])
        XCTAssertTrue(set.tasks[0].chatTemplate)
        XCTAssertTrue(set.grid[0].key.contains("\"suffix\": \"decode\", \"max_new_tokens\": 4, \"stop\": [\"\\n\"], \"chat_template\": true}"), set.grid[0].key)
        XCTAssertThrowsError(try ExperimentConfig.parse("""
            models: [{id: t, synthetic: tiny}]
            tasks: [{task: fidelity, context: 64, stop: "x"}]
            policies: [{policy: full}]
            """, file: "g.yaml")) { e in XCTAssertTrue("\(e)".contains("teacher-forced"), "\(e)") }
    }

    func config(output: String, taskExtra: String = "", samples: Int = 2) -> String {
        """
        name: generation
        output: \(output)
        threads: 1
        models:
          - id: kvlab-retrieval
            path: models/kvlab-retrieval
        tasks:
          - task: passkey
            context: 200
            samples: \(samples)
        \(taskExtra)policies:
          - policy: full
          - policy: streaming_llm
            keep: 0.5
        """
    }

    /// Stop strings end generation and cut the saved text; the text each sample was scored on is in
    /// the results; max_new_tokens bounds the answer.
    func testStopStringsCutTheGenerationAndTheTextIsSaved() throws {
        FileManager.default.changeCurrentDirectoryPath(RegressionBaselineTests.root.path)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-gen-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        func sweep(_ extra: String, _ name: String) throws -> ResultsFile {
            var o = RunOptions(); o.progress = false
            let c = try ExperimentConfig.parse(config(output: dir.appendingPathComponent(name).path, taskExtra: extra), file: "g.yaml")
            _ = try SweepRunner(config: c, options: o).run { _ in }
            return try ResultsFile.read(c.output)
        }
        let free = try sweep("    max_new_tokens: 6\n", "free.h5")
        let full = free.runs[0]
        let texts = try XCTUnwrap(full.texts.first { $0.name == "generated" }?.values)
        XCTAssertEqual(texts.count, 2)
        XCTAssertEqual(full.perSample.first { $0.name == "generated_tokens" }?.values, [6, 6])
        // The passkey scorer reads the saved text: score 1 exactly when its first number is the key.
        let keys = full.perSample.first { $0.name == "meta_key" }!.values
        let scores = full.perSample.first { $0.name == "score" }!.values
        for i in 0..<2 {
            XCTAssertEqual(scores[i], TaskScoring.passkey(texts[i], key: String(Int(keys[i])), joinSpacedDigits: true))
        }
        // Stop at the second word of sample 0's answer: generation ends there and the text is cut before it.
        let words = texts[0].split(separator: " ")
        XCTAssertGreaterThanOrEqual(words.count, 3, texts[0])
        let stop = " " + String(words[1])
        let stopped = try sweep("    max_new_tokens: 6\n    stop: [\"\(stop)\"]\n", "stop.h5").runs[0]
        let cut = try XCTUnwrap(stopped.texts.first?.values[0])
        XCTAssertEqual(cut, String(texts[0][..<texts[0].range(of: stop)!.lowerBound]))
        XCTAssertLessThan(stopped.perSample.first { $0.name == "generated_tokens" }!.values[0], 6)
        XCTAssertNotEqual(stopped.key, full.key)
    }
}
