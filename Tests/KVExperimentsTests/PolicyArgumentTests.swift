import Foundation
import XCTest
@testable import KVExperiments
import KVHDF5
import KVModel
import KVPolicies
import KVTokenizer

/// `--policy SPEC` (kvlab generate) reads like a config's policy entry; `PromptRun` records
/// retention maps and measured bytes; the text codec takes a .gguf model's tokenizer.
final class PolicyArgumentTests: XCTestCase {
    /// What a YAML config's `policies:` list gives for the same entry.
    func fromConfig(_ entry: String) throws -> [PolicySpec] {
        let text = "models:\n  - synthetic: tiny\ntasks:\n  - {task: fidelity, context: 64}\npolicies:\n  - \(entry)\n"
        return try ExperimentConfig.parse(text, file: "t.yaml").policies
    }

    func message(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "no error" } catch { return (error as? LocalizedError)?.errorDescription ?? "\(error)" }
    }

    func testSameSpecsAndDefaultsAsConfigs() throws {
        let cases = [
            ("snapkv:keep=0.25,window=32", "{policy: snapkv, keep: 0.25, window: 32}"),
            ("snapkv:keep=0.25", "{policy: snapkv, keep: 0.25}"),
            ("streaming_llm:budget=64,sinks=2,position_shift=true", "{policy: streaming_llm, budget: 64, sinks: 2, position_shift: true}"),
            ("h2o:compression_ratio=0.5,scoring=observed", "{policy: h2o, compression_ratio: 0.5, scoring: observed}"),
            ("quest:budget=128", "{policy: quest, budget: 128}"),
            ("kivi:bits=4", "{policy: kivi, bits: 4}"),
            ("full", "{policy: full}"),
        ]
        for (argument, yaml) in cases {
            XCTAssertEqual([try PolicyArgument.parse(argument)], try fromConfig(yaml), argument)
        }
        XCTAssertEqual(try PolicyArgument.policy([]), .full)
        let stack = try PolicyArgument.policy(["streaming_llm:budget=64", "kivi:bits=2"])
        XCTAssertEqual([stack], try fromConfig("{stack: [{policy: streaming_llm, budget: 64}, {policy: kivi, bits: 2}]}"))
    }

    func testErrorsNameTheArgumentAndField() {
        let cases: [(String, [String])] = [
            ("snapkv:keep=[0.25,0.5]", ["--policy 'snapkv:keep=[0.25,0.5]'", "'keep'", "a list", "one policy per --policy"]),
            ("snapkv:keep=2", ["'keep'", "expected a fraction kept in (0, 1], got 2"]),
            ("snapkv:keep=0.5,foo=1", ["'foo'", "unknown key", "window"]),
            ("snapkv:window=8", ["expected exactly one of budget (tokens), keep"]),
            ("snapkv:keep", ["expected key=value, got 'keep'"]),
            ("nosuch:keep=0.5", ["unknown policy 'nosuch'", "snapkv"]),
            ("stack", ["repeat --policy"]),
            ("snapkv:keep=0.5,zip=[keep]", ["'zip' is not a policy parameter"]),
        ]
        for (argument, fragments) in cases {
            let m = message { try PolicyArgument.parse(argument) }
            for f in fragments { XCTAssertTrue(m.contains(f), "\(argument): '\(f)' not in: \(m)") }
            XCTAssertFalse(m.contains(":2:"), "\(argument): positions in the generated YAML leak: \(m)")
        }
        // A stack that cannot compose is refused like a config's stack.
        let m = message { try PolicyArgument.policy(["minicache", "kivi:bits=2"]) }
        XCTAssertTrue(m.contains("--policy 'minicache' --policy 'kivi:bits=2'") && m.contains("does not stack"), m)
    }

    func testPromptRunRetentionAndBytes() throws {
        let model = try ModelSource.parse("synthetic:tiny,layers=2,seed=5").load()
        let prompt = Array((0..<40).map { ($0 * 7) % model.config.vocabSize })
        let full = try PromptRun.run(model: model, prompt: prompt, policy: .full, maxNewTokens: 5)
        // The full policy is plain generation; every position is kept.
        XCTAssertEqual(full.generation.tokens, model.generate(prompt: prompt, maxNewTokens: 5).tokens)
        XCTAssertEqual(full.retained.count, model.config.layers)
        for layer in full.retained { for head in layer { XCTAssertEqual(head, Array(0..<40)) } }

        let spec = try PolicyArgument.parse("snapkv:keep=0.25,window=8")
        let run = try PromptRun.run(model: model, prompt: prompt, policy: spec, maxNewTokens: 5)
        let map = run.retentionMap
        XCTAssertEqual(map.shape, [1, model.config.layers, model.config.kvHeads, 10])
        for layer in run.retained { for head in layer {
            XCTAssertEqual(head.count, 10)   // 25% of 40
            XCTAssertTrue(head.allSatisfy { (0..<40).contains($0) } && head == head.sorted())
            XCTAssertTrue(Set(32..<40).isSubset(of: Set(head)), "SnapKV keeps its observation window")
        } }
        XCTAssertLessThan(run.generation.stats.peakBytesStored, full.generation.stats.peakBytesStored)

        let path = NSTemporaryDirectory() + "kvlab-retention-\(getpid()).h5"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try run.writeRetention(to: path, model: "synthetic:tiny")
        let f = try H5File.open(path)
        let (values, shape) = try f.root.readInt32s("retention")
        XCTAssertEqual(shape, map.shape)
        XCTAssertEqual(values, map.positions)
        XCTAssertEqual(try f.root.intAttribute("kv_bytes_stored"), run.generation.stats.bytesStored)
        XCTAssertEqual(try f.root.intAttribute("kv_bytes_stored_peak"), run.generation.stats.peakBytesStored)
        XCTAssertEqual(try f.root.doubleAttribute("kv_bytes_read_per_step"), run.generation.stats.meanDecodeBytesRead)
        XCTAssertEqual(try f.root.stringAttribute("policy"), "snapkv")
        try f.close()
    }

    /// A .gguf model path gives the runner its tokenizer (and the standard prompt style).
    func testCodecFromGGUF() throws {
        let gguf = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("KVTokenizerTests/Fixtures/gguf/llama_spm.gguf").path
        let (codec, style) = try TokenizerCodec.textSetup(model: gguf)
        let c = try XCTUnwrap(codec)
        let tok = try Tokenizer(gguf: gguf)
        let text = "The pass key is 12345. Remember it."
        XCTAssertEqual(c.encode(text), tok.encode(text, addSpecialTokens: true))
        XCTAssertEqual(c.encode(text).first, 1, "the file's add_bos_token puts <s> first")
        XCTAssertEqual(c.decode(c.encode(text)), text)
        XCTAssertEqual(style, .standard)
    }
}

/// Every registered policy's sample entry is a valid config entry and the same `--policy` string.
final class RegistrySampleTests: XCTestCase {
    func testEverySampleParsesAsConfigAndAsArgument() throws {
        let cal = FileManager.default.temporaryDirectory.appendingPathComponent("sample-\(UUID().uuidString).h5").path
        defer { try? FileManager.default.removeItem(atPath: cal) }
        try LokiCalibration.identity(layers: 2, kvHeads: 2, headDim: 16).save(to: cal)
        // svd_heads' sample names its own calibration file.
        let svd = cal + ".svd.h5"
        defer { try? FileManager.default.removeItem(atPath: svd) }
        try SVDHeadsCalibrator.calibrate(model: try ModelSource.parse("synthetic:tiny").load(), storedKVHeads: 1,
                                         source: .random(count: 64, seed: 1), sequenceLength: 64).save(to: svd)
        for d in PolicyRegistry.all {
            let sample = d.sample.replacingOccurrences(of: "cal.h5", with: cal).replacingOccurrences(of: "svd_kv1.h5", with: svd)
            let entry = sample.isEmpty ? "{policy: \(d.name)}" : "{policy: \(d.name), \(sample)}"
            let text = "models:\n  - synthetic: tiny\ntasks:\n  - {task: fidelity, context: 64}\npolicies:\n  - \(entry)\n"
            let fromConfig = try ExperimentConfig.parse(text, file: "s.yaml").policies
            XCTAssertEqual(fromConfig.map(\.kind), [d.name])
            let argument = d.name + (sample.isEmpty ? "" : ":" + sample.replacingOccurrences(of: ": ", with: "=").replacingOccurrences(of: ", ", with: ","))
            XCTAssertEqual([try PolicyArgument.parse(argument)], fromConfig, argument)
        }
    }
}
