import Foundation
import XCTest
import KVModel
import KVTokenizer
@testable import KVExperiments

/// Issue 16: unbounded inputs, config messages, and `validate` catching what `run` would reject.
final class ConfigRobustnessTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-cfg-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    static let models = "models:\n  - {id: tiny, synthetic: tiny}\n"
    static let tasks = "tasks:\n  - task: fidelity\n    context: 64\n    samples: 1\n    eval_tokens: 8\n"
    static let policies = "policies:\n  - policy: full\n"

    func parseError(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do { _ = try ExperimentConfig.parse(yaml, file: "bad.yaml"); XCTFail("accepted", file: file, line: line); return "" } catch {
            return error.localizedDescription
        }
    }

    /// Parses, then runs the preflight; returns its message.
    func preflightError(_ yaml: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            let c = try ExperimentConfig.parse(yaml, file: "bad.yaml")
            try Preflight.check(c)
            XCTFail("passed the preflight", file: file, line: line)
            return ""
        } catch { return error.localizedDescription }
    }

    func assertContains(_ message: String, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
        for p in parts { XCTAssertTrue(message.contains(p), "'\(message)' lacks '\(p)'", file: file, line: line) }
    }

    // MARK: YAML bounds

    /// The issue's reproduction: 10 KB of nested brackets segfaulted `validate` (Yams recursion).
    func testDeeplyNestedYAMLIsRefusedBeforeComposing() {
        let flow = "models: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
        assertContains(parseError(flow), ["bad.yaml:1:", "nesting deeper than 64"])
        let block = "models:\n" + (0 ..< 200).map { String(repeating: " ", count: $0) + "- " }.joined(separator: "\n") + "x\n"
        assertContains(parseError(block), ["nesting deeper than 64"])
        let compact = "models: \n  " + String(repeating: "- ", count: 5000) + "x\n"
        assertContains(parseError(compact), ["nesting deeper than 64"])
        assertContains(parseError(String(repeating: "#", count: 2 << 20)), ["limited to 1048576 bytes"])
    }

    /// Brackets in comments, quotes and block scalars are text, not nesting: no false alarm.
    func testTextThatLooksNestedIsNotRefused() throws {
        let yaml = "description: |\n" + (0 ..< 100).map { _ in "  [[[[ {{{{ ((( - - - - \n" }.joined() +
            "# [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n" +
            "name: \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"\n" +
            Self.models + Self.tasks + Self.policies
        XCTAssertNoThrow(try ExperimentConfig.parse(yaml, file: "ok.yaml"))
        XCTAssertNil(YAMLInput.deepestLine(yaml, limit: 8))
    }

    /// `file: invalid YAML: 9:14:` became `file:9:14: invalid YAML: ...`.
    func testYAMLSyntaxErrorsNameLineAndColumn() {
        let message = parseError(Self.models + "tasks:\n  - task: fidelity\n    context: [64\n" + Self.policies)
        XCTAssertTrue(message.hasPrefix("bad.yaml:"), message)
        let position = message.dropFirst("bad.yaml:".count).prefix { $0 != " " }
        XCTAssertTrue(position.split(separator: ":").count == 2 || position.hasSuffix(":"), message)
        XCTAssertTrue(message.contains(": invalid YAML: "), message)
        XCTAssertFalse(message.contains("invalid YAML: 1") || message.contains("invalid YAML: 6"), message)
    }

    // MARK: Bounds of values

    /// Found by FuzzYAMLConfig: a synthetic shape beyond Int trapped converting Double to Int.
    func testAbsurdSyntheticShapesAreErrorsNotTraps() {
        for (spec, field) in [("tiny,layers=2666666666666666666666666666", "layers"), ("tiny,hidden=1e300", "hidden"),
                              ("tiny,heads=2.5", "heads"), ("tiny,seed=-1", "seed"), ("tiny,std=nan", "std"),
                              ("tiny,rope_theta=inf", "rope_theta")] {
            let yaml = "models:\n  - {id: t, synthetic: \"\(spec)\"}\ntasks:\n  - {task: fidelity, context: 64}\npolicies:\n  - {policy: full}\n"
            XCTAssertThrowsError(try ExperimentConfig.parse(yaml, file: "s.yaml"), spec) {
                XCTAssertTrue("\($0)".contains(field), "\(spec): \($0)")
            }
        }
    }

    /// Found by FuzzYAMLConfig: Yams traps converting an overflowing base-60 integer ("1:...").
    func testBase60NumbersAreErrorsNotTraps() {
        for (field, value) in [("seed", "0200000000000000000000:0200000000000000000000"), ("seed", "1:20"), ("threads", "3:00")] {
            let yaml = "\(field): \(value)\n" + Self.models + "tasks:\n  - {task: fidelity, context: 64}\npolicies:\n  - {policy: full}\n"
            XCTAssertThrowsError(try ExperimentConfig.parse(yaml, file: "b.yaml"), value) {
                XCTAssertTrue("\($0)".contains(field) && "\($0)".contains("expected an integer"), "\($0)")
            }
        }
    }

    func testHugeSamplesAndContextAreRefused() {
        assertContains(parseError(Self.models + "tasks:\n  - task: fidelity\n    context: 64\n    samples: 1000000000\n" + Self.policies),
                       ["bad.yaml:6:", "tasks[0].samples", "<= 1048576"])
        assertContains(parseError(Self.models + "tasks:\n  - task: fidelity\n    context: 1000000000\n" + Self.policies),
                       ["tasks[0].context", "<= 16777216"])
    }

    func testResourceLimitsAreCheckedAndCanBeRaised() throws {
        let big = Self.models + "tasks:\n  - task: fidelity\n    context: 1000000\n    samples: 10000\n    eval_tokens: 8\n" + Self.policies
        assertContains(preflightError(big), ["tasks[0]", "token-layers", "above the limit of 10000000000", "limits: {token_layers"])
        // Raised explicitly: the work passes, memory is checked next (a 1 MiB budget).
        let raised = big + "limits:\n  token_layers: 1e12\n  memory_gib: 0.001\n"
        assertContains(preflightError(raised), ["tasks[0]", "needs about", "the limit is"])
        assertContains(parseError(Self.models + Self.tasks + Self.policies + "limits: {token_layers: -5}\n"), ["limits.token_layers", "positive"])
    }

    // MARK: Config messages (item 7)

    func testZipOfEmptyListsIsAnError() {
        let yaml = Self.models + Self.tasks + "policies:\n  - policy: full\n  - policy: snapkv\n    budget: []\n    window: []\n    zip: [budget, window]\n"
        assertContains(parseError(yaml), ["policies[1].zip", "empty"])
    }

    func testTheFieldTheUserWroteIsNamed() {
        let yaml = Self.models + Self.tasks + "policies:\n  - policy: oracle_topk\n    k_fraction: 2\n"
        let message = parseError(yaml)
        assertContains(message, ["policies[0].k_fraction"])
        XCTAssertFalse(message.contains("top_k"), message)
    }

    func testOutputMustNameAFile() {
        assertContains(parseError("output: \"\"\n" + Self.models + Self.tasks + Self.policies), ["'output'", "empty string"])
        assertContains(parseError("output: \(dir.path)\n" + Self.models + Self.tasks + Self.policies), ["'output'", "is a directory"])
    }

    func testEmptyModelFolderIsCaughtByValidate() throws {
        let empty = dir.appendingPathComponent("empty-model").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        let yaml = "models:\n  - {id: m, path: \(empty)}\n" + Self.tasks + Self.policies
        assertContains(preflightError(yaml), ["bad.yaml:2:", "models[0]", "model 'm'", "config.json", "not found"])
    }

    /// A text task on a tokenizer-less model failed every run ("done: 2 ran, 2 failed") after validate said ok.
    func testTextTaskOnATokenizerlessModelIsCaughtByValidate() {
        let yaml = Self.models + "tasks:\n  - task: passkey\n    context: 256\n    samples: 1\n" + Self.policies
        assertContains(preflightError(yaml), ["tasks[0]", "passkey", "needs a tokenizer", "tiny", "models: [...]"])
    }

    /// `head_pooling kv_heads: 3` on a model with 2 KV heads stored the full cache with status ok.
    func testPoliciesAreCheckedAgainstTheModelShape() throws {
        for (policy, fragment) in [("{policy: head_pooling, kv_heads: 3}", "must divide the model's 2 KV heads"),
                                   ("{policy: head_pooling, kv_heads: 4}", "must divide"),
                                   ("{policy: minicache, start_layer: 1}", "no pair of layers"),
                                   ("{policy: quest, budget: 32, dense_layers: 2}", "covers all 2 layers"),
                                   ("{policy: cla, layers: 5}", "no layer would share")] {
            let yaml = Self.models + Self.tasks + "policies:\n  - policy: full\n  - \(policy)\n"
            assertContains(preflightError(yaml), ["bad.yaml:10:", "policies[1]", "model 'tiny'", fragment])
        }
        XCTAssertNoThrow(try Preflight.check(ExperimentConfig.parse(Self.models + Self.tasks +
            "policies:\n  - {policy: head_pooling, kv_heads: 1}\n  - stack: [{policy: head_pooling, kv_heads: 1}, {policy: snapkv, keep: 0.5, window: 8}]\n", file: "ok.yaml")))
    }

    /// The runner refuses a bad head-pooling target on its own too (no preflight, e.g. the API).
    func testRunnerRefusesHeadPoolingThatDoesNotDivide() throws {
        let c = try ExperimentConfig.parse(Self.models + Self.tasks + "policies:\n  - {policy: head_pooling, kv_heads: 3}\n", file: "x.yaml")
        let m = try c.models[0].source.load()
        let runner = SweepRunner(config: c, options: RunOptions())
        let samples = try TaskFactory.samples(c.tasks[0], codec: nil, vocabularySize: m.config.vocabSize)
        let results = runner.evaluateGroup(c.grid, model: m, samples: samples, stop: StopRule()) { _ in }
        XCTAssertThrowsError(try results[0].get()) {
            XCTAssertTrue("\($0)".contains("kv_heads"), "\($0)")
        }
    }

    // MARK: Tokenizer loops

    /// A codec that drops every word (an empty vocabulary): TextPrompt.search looped forever.
    struct DroppingCodec: TextCodec {
        func encode(_ text: String) -> [Int] { [] }
        func decode(_ ids: [Int]) -> String { "" }
    }

    func testTokenizerThatDropsTextEndsTheSearchWithAnError() {
        let spec = TaskSpec(kind: .passkey, context: 256, samples: 1)
        let start = Date()
        XCTAssertThrowsError(try TaskFactory.samples(spec, codec: DroppingCodec(), vocabularySize: 100)) { error in
            XCTAssertTrue(error.localizedDescription.contains("the tokenizer drops text"), error.localizedDescription)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        XCTAssertThrowsError(try PromptFit.search(target: 10, limit: nil) { _ in 0 })
        XCTAssertEqual(try PromptFit.search(target: 10, limit: nil) { $0 }, 10)
        XCTAssertEqual(try PromptFit.search(target: 10, limit: 4) { $0 }, 4)
    }

    /// The issue's reproduction end to end: a model folder whose tokenizer.json has an empty
    /// vocabulary; `validate` (the preflight) reports the passkey task instead of looping.
    func testEmptyVocabularyTokenizerIsCaughtByValidate() throws {
        let model = dir.appendingPathComponent("empty-vocab")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: URL(fileURLWithPath: "models/kvlab-retrieval").appendingPathComponent(f),
                                             to: model.appendingPathComponent(f))
        }
        try #"{"model": {"type": "WordLevel", "vocab": {}}, "pre_tokenizer": {"type": "Whitespace"}}"#
            .write(to: model.appendingPathComponent("tokenizer.json"), atomically: true, encoding: .utf8)
        let yaml = "models:\n  - {id: m, path: \(model.path)}\ntasks:\n  - task: passkey\n    context: 256\n    samples: 1\n" + Self.policies
        let start = Date()
        assertContains(preflightError(yaml), ["tasks[0]", "passkey", "model 'm'", "drops text"])
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }

    /// A pathological Split regex (`(\w+\s?)*$`) made the passkey search loop for ever: it turns the
    /// whole prompt into one piece, so the prompt never grows. Now an error, in bounded time;
    /// the regex's own backtracking is bounded too (TokenizerRobustnessTests).
    func testPathologicalSplitRegexFailsTheTaskInBoundedTime() throws {
        let json = """
        {"model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1}, "unk_token": "[UNK]"},
         "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(\\\\w+\\\\s?)*$"}, "behavior": "Isolated", "invert": false}}
        """
        let tokenizer = try Tokenizer(jsonData: Data(json.utf8), name: "evil/tokenizer.json")
        let spec = TaskSpec(kind: .passkey, context: 128, samples: 1)
        let start = Date()
        XCTAssertThrowsError(try TokenizerWorkLimit.check {
            try TaskFactory.samples(spec, codec: TokenizerCodec(tokenizer: tokenizer), vocabularySize: 10)
        }) { error in
            let message = error.localizedDescription
            XCTAssertTrue(message.contains("drops text") || error is TokenizerWorkLimitError, message)
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 60)
    }
}
