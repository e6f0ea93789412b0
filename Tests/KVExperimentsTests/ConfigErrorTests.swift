import XCTest
import KVPolicies
@testable import KVExperiments

/// Bad configs get an error naming the file, the line and the field, and what was expected.
/// Each row: a config, the line expected in the message, and fragments the message must contain.
final class ConfigErrorTests: XCTestCase {
    static let models = "models:\n  - synthetic: tiny\n"
    static let tasks = "tasks:\n  - task: fidelity\n    context: 128\n"
    static let policies = "policies:\n  - policy: full\n"

    /// (name, yaml, expected line or nil, fragments)
    static let table: [(String, String, Int?, [String])] = [
        ("unknown top-level key", "modles: []\n" + models + tasks + policies, 1, ["'modles'", "unknown key", "expected one of"]),
        ("missing models", tasks + policies, nil, ["missing required key 'models'"]),
        ("models not a list", "models: tiny\n" + tasks + policies, 1, ["'models'", "expected a list"]),
        ("model with path and synthetic", "models:\n  - path: x\n    synthetic: tiny\n" + tasks + policies, 2, ["models[0]", "exactly one of 'path'"]),
        ("checkpoint folder missing", "models:\n  - path: /no/such/model\n" + tasks + policies, 2, ["models[0].path", "/no/such/model", "not found"]),
        ("unknown synthetic preset", "models:\n  - synthetic: huge\n" + tasks + policies, 2, ["models[0].synthetic", "expected one of"]),
        ("bad kv_dtype", "models:\n  - synthetic: tiny\n    kv_dtype: fp8\n" + tasks + policies, 3, ["models[0].kv_dtype", "expected one of f32, f16, bf16", "'fp8'"]),
        ("kv_dtype not a string", "models:\n  - synthetic: tiny\n    kv_dtype: [f16, f32]\n" + tasks + policies, 3, ["models[0].kv_dtype"]),
        ("duplicate model id", "models:\n  - {id: a, synthetic: tiny}\n  - {id: a, synthetic: small}\n" + tasks + policies, 3, ["'models[1]'", "'a' appears twice"]),
        ("unknown task", models + "tasks:\n  - task: trivia\n    context: 128\n" + policies, 4, ["tasks[0].task", "expected one of", "trivia"]),
        ("context not an integer", models + "tasks:\n  - task: fidelity\n    context: long\n" + policies, 5, ["tasks[0].context", "expected an integer", "'long'"]),
        ("context too small", models + "tasks:\n  - task: fidelity\n    context: 4\n" + policies, 5, ["tasks[0].context", ">= 16"]),
        ("depth out of range", models + "tasks:\n  - task: needle\n    context: 512\n    depth: 1.5\n" + policies, 6, ["tasks[0].depth", "[0, 1]"]),
        ("bad suffix mode", models + "tasks:\n  - task: passkey\n    context: 512\n    suffix: sideways\n" + policies, 6, ["tasks[0].suffix", "decode, prefill, compressed"]),
        ("eval_tokens >= context", models + "tasks:\n  - task: fidelity\n    context: 64\n    eval_tokens: 64\n" + policies, 6, ["eval_tokens", "smaller than the context"]),
        ("unknown policy", models + tasks + "policies:\n  - policy: magic\n", 7, ["policies[0].policy", "unknown policy 'magic'", "known:"]),
        ("zero budget", models + tasks + "policies:\n  - policy: knorm\n    budget: 0\n", 8, ["policies[0].budget", "positive token count"]),
        ("negative budget", models + tasks + "policies:\n  - policy: tova\n    budget: -3\n", 8, ["policies[0].budget", "positive"]),
        ("keep out of range", models + tasks + "policies:\n  - policy: knorm\n    keep: 1.5\n", 8, ["policies[0].keep", "(0, 1]"]),
        ("ratio outside [0, 1)", models + tasks + "policies:\n  - policy: knorm\n    compression_ratio: 1.0\n", 8, ["compression_ratio", "[0, 1)"]),
        ("two budgets", models + tasks + "policies:\n  - policy: knorm\n    budget: 64\n    keep: 0.5\n", 7, ["policies[0]", "exactly one of budget"]),
        ("no budget", models + tasks + "policies:\n  - policy: h2o\n", 7, ["policies[0]", "exactly one of budget", "got none"]),
        ("window > budget", models + tasks + "policies:\n  - policy: snapkv\n    budget: 32\n    window: 64\n", 9, ["policies[0].window", "at most the budget"]),
        ("sinks >= budget", models + tasks + "policies:\n  - policy: streaming_llm\n    budget: 8\n    sinks: 8\n", 9, ["policies[0].sinks", "fewer sinks"]),
        ("even kernel", models + tasks + "policies:\n  - policy: snapkv\n    keep: 0.5\n    kernel: 4\n", 9, ["policies[0].kernel", "odd"]),
        ("unknown policy key", models + tasks + "policies:\n  - policy: snapkv\n    keep: 0.5\n    windw: 8\n", 9, ["policies[0].windw", "unknown key", "window"]),
        ("zip unequal lengths", models + tasks + "policies:\n  - policy: snapkv\n    budget: [64, 128]\n    window: [8]\n    zip: [budget, window]\n", 10, ["policies[0].zip", "equal length"]),
        ("zip unknown key", models + tasks + "policies:\n  - policy: snapkv\n    budget: [64, 128]\n    zip: [budget, window]\n", 9, ["policies[0].zip", "'window'"]),
        ("threads not a number", "threads: many\n" + models + tasks + policies, 1, ["'threads'", "expected an integer"]),
        ("duplicate key", "seed: 1\nseed: 2\n" + models + tasks + policies, 2, ["'seed'", "duplicate key"]),
        ("invalid YAML", "models: [\n", nil, ["invalid YAML"]),
        ("empty file", "", nil, ["empty config"]),
        ("bad schedule", models + tasks + "policies:\n  - policy: knorm\n    keep: 0.5\n    schedule: sometimes\n", 9, ["policies[0].schedule", "prefill, always"]),
        ("empty stack", models + tasks + "policies:\n  - stack: []\n", 7, ["policies[0].stack", "at least one policy"]),
        ("position_shift not a boolean", models + tasks + "policies:\n  - policy: streaming_llm\n    budget: 64\n    position_shift: maybe\n", 9, ["policies[0].position_shift", "expected true or false"]),
        ("minicache retain out of range", models + tasks + "policies:\n  - policy: minicache\n    retain_fraction: 1.5\n", 8, ["policies[0].retain_fraction", "[0, 1]"]),
        ("minicache stacked with kivi", models + tasks + "policies:\n  - stack:\n      - {policy: minicache}\n      - {policy: kivi}\n", 8, ["policies[0].stack", "minicache does not stack with kivi"]),
    ]

    func testEveryBadConfigGetsALocatedMessage() {
        for (name, yaml, line, fragments) in Self.table {
            do {
                _ = try ExperimentConfig.parse(yaml, file: "bad.yaml")
                XCTFail("\(name): accepted")
            } catch {
                let message = error.localizedDescription
                XCTAssertTrue(message.hasPrefix("bad.yaml"), "\(name): '\(message)' does not name the file")
                if let line { XCTAssertTrue(message.hasPrefix("bad.yaml:\(line):"), "\(name): '\(message)' is not at line \(line)") }
                for f in fragments { XCTAssertTrue(message.contains(f), "\(name): '\(message)' lacks '\(f)'") }
            }
        }
        XCTAssertGreaterThanOrEqual(Self.table.count, 15)
    }

    func testMissingFile() {
        XCTAssertThrowsError(try ExperimentConfig.load("/no/such/config.yaml")) { e in
            XCTAssertTrue(e.localizedDescription.contains("/no/such/config.yaml: file not found"))
        }
    }

    func testSweepsZipAndStacksExpand() throws {
        let yaml = """
        models:
          - synthetic: tiny
        tasks:
          - task: fidelity
            context: [64, 128]
        policies:
          - policy: full
          - policy: snapkv
            budget: [32, 48, 64]
            window: [8, 16, 32]
            zip: [budget, window]
          - policy: streaming_llm
            keep: [0.25, 0.5]
            sinks: [2, 4]
          - stack:
              - {policy: snapkv, keep: [0.25, 0.5], window: 8}
              - {policy: knorm, keep: 0.5}
        """
        let c = try ExperimentConfig.parse(yaml, file: "ok.yaml")
        XCTAssertEqual(c.tasks.map(\.context), [64, 128])
        XCTAssertEqual(c.policies.count, 1 + 3 + 4 + 2)
        XCTAssertEqual(c.grid.count, 2 * 10)
        let snap = try XCTUnwrap(c.policies[2].config(as: SnapKV.Config.self))
        XCTAssertEqual(snap.budget, .tokens(48)); XCTAssertEqual(snap.window, 16)
        let stream = try XCTUnwrap(c.policies[4].config(as: StreamingLLM.Config.self))
        XCTAssertEqual(stream.budget, .keep(0.25)); XCTAssertEqual(stream.sinks, 2)
        XCTAssertEqual(Set(c.grid.map(\.key)).count, c.grid.count, "grid keys are unique")
        // The grid hash ignores formatting and output, and changes with the grid.
        let reformatted = yaml.replacingOccurrences(of: "context: [64, 128]", with: "context:\n      - 64\n      - 128")
        XCTAssertEqual(try ExperimentConfig.parse(reformatted + "\noutput: elsewhere.h5\n", file: "b.yaml").gridHash, c.gridHash)
        XCTAssertNotEqual(try ExperimentConfig.parse(yaml.replacingOccurrences(of: "sinks: [2, 4]", with: "sinks: [2, 8]"), file: "c.yaml").gridHash, c.gridHash)
    }
}

/// The typed run key writes the very text results files and baselines hold, and reads back.
final class RunKeyTests: XCTestCase {
    func testTextIsTheStoredKeyAndDecodes() throws {
        let yaml = """
        models:
          - {id: tiny, synthetic: tiny}
        tasks:
          - {task: needle, context: 256, samples: 2, depth: 0.5, text_file: debian:licenses}
          - {task: fidelity, context: 128}
        policies:
          - {policy: snapkv, keep: 0.25, window: 16}
        """
        let c = try ExperimentConfig.parse(yaml, file: "k.yaml")
        XCTAssertEqual(c.grid[0].key, "{\"model\": \"tiny|synthetic:tiny\", \"task\": {\"kind\": \"needle\", \"context\": 256, \"samples\": 2, " +
            "\"seed\": 0, \"depth\": 0.5, \"text_file\": \"debian:licenses\", \"eval_tokens\": 32, \"suffix\": \"prefill\"}, " +
            "\"policy\": \"snapkv(compression_ratio=0.75,window=16,kernel=5,pooling=avg)\"}")
        for p in c.grid {
            XCTAssertEqual(try JSONDecoder().decode(RunKey.self, from: Data(p.key.utf8)), p.runKey)
            XCTAssertEqual(p.runKey.reference.policy, nil)
        }
        XCTAssertNotEqual(c.grid[0].runKey.reference, c.grid[1].runKey.reference, "one reference per (model, task)")
    }

    /// Generation settings join the key only when set (keys of older configs stay byte-identical) and read back.
    func testGenerationSettingsJoinTheKeyWhenSet() throws {
        let yaml = """
        models:
          - {id: tiny, synthetic: tiny}
        tasks:
          - {task: passkey, context: 256, max_new_tokens: 8, stop: ["\\n", "."], chat_template: true}
          - {task: passkey, context: 256}
        policies:
          - {policy: full}
        """
        let c = try ExperimentConfig.parse(yaml, file: "k.yaml")
        XCTAssertTrue(c.grid[0].key.contains("\"suffix\": \"decode\", \"max_new_tokens\": 8, \"stop\": [\"\\n\",\".\"], \"chat_template\": true}"), c.grid[0].key)
        XCTAssertTrue(c.grid[1].key.contains("\"suffix\": \"decode\"}, \"policy\""), c.grid[1].key)
        for p in c.grid { XCTAssertEqual(try JSONDecoder().decode(RunKey.self, from: Data(p.key.utf8)), p.runKey) }
        XCTAssertNotEqual(c.grid[0].runKey.reference, c.grid[1].runKey.reference)
    }

    /// A head ablation follows the policy in the key text (unablated keys stay byte for byte as
    /// before), reads back, and ablated runs share the intact model's reference.
    func testAblationIsWrittenAfterThePolicyAndSharesTheIntactReference() throws {
        let yaml = """
        models:
          - {id: tiny, synthetic: tiny}
        tasks:
          - {task: passkey, context: 128, samples: 1, ablate_heads: [none, "heads:0.1,1.2"]}
          - {task: passkey, context: 128, samples: 1}
        policies:
          - {policy: full}
        """
        let c = try ExperimentConfig.parse(yaml, file: "k.yaml")
        XCTAssertEqual(c.grid.count, 3)
        let keys = c.grid.map(\.key)
        XCTAssertTrue(keys[1].hasSuffix("\"policy\": \"full\", \"ablate_heads\": \"heads:0.1,1.2;mode=uniform;phases=decode\"}"), keys[1])
        XCTAssertFalse(keys[2].contains("ablate_heads"), keys[2])
        for p in c.grid {
            XCTAssertEqual(try JSONDecoder().decode(RunKey.self, from: Data(p.key.utf8)), p.runKey)
            XCTAssertEqual(p.runKey.reference, c.grid[2].runKey.reference)
        }
        XCTAssertEqual(Set(keys).count, 3)
    }
}
