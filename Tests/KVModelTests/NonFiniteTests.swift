import XCTest
import KVCacheCore
import KVTensor
@testable import KVModel

/// Issue 16: NaN and infinity are errors, never results. Non-finite weights are refused at load,
/// non-finite hidden states or logits stop a forward pass with the layer and position, and
/// config.json values the decoder cannot honour are refused.
final class NonFiniteTests: XCTestCase {
    // MARK: The scan

    func testFirstNonFiniteFindsEveryPositionAndKind() {
        for n in [1, 2, 15, 16, 17, 31, 32, 33, 100, 1000] {
            var x = (0 ..< n).map { Float($0) * 0.5 - 3 }
            XCTAssertNil(x.withUnsafeBufferPointer { Ops.firstNonFinite($0.baseAddress!, count: n) }, "n \(n)")
            for bad in [Float.nan, .infinity, -.infinity] {
                for i in Set([0, n / 2, n - 1]) {
                    x[i] = bad
                    XCTAssertEqual(x.withUnsafeBufferPointer { Ops.firstNonFinite($0.baseAddress!, count: n) }, i, "n \(n), \(bad) at \(i)")
                    x[i] = 1
                }
            }
        }
        XCTAssertTrue(Ops.allFinite([Float.greatestFiniteMagnitude, -.greatestFiniteMagnitude, .leastNonzeroMagnitude]))
    }

    // MARK: Weights at load

    var dir: URL!
    var weightsURL: URL { dir.appendingPathComponent("model.safetensors") }
    var configURL: URL { dir.appendingPathComponent("config.json") }

    override func setUpWithError() throws {
        dir = Fixtures.tempDir("nonfinite")
        let src = URL(fileURLWithPath: Fixtures.hf("llama_gqa"))
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func loadError() -> String {
        do { _ = try LlamaModel(checkpoint: dir.path); XCTFail("expected the load to fail"); return "" } catch {
            return error.localizedDescription
        }
    }

    func poison(_ tensor: String, index: Int, with value: Float) throws {
        var entries = try SafeTensorsTestWriter.read(weightsURL)
        let i = entries.firstIndex { $0.name == tensor }!
        withUnsafeBytes(of: value) { entries[i].data.replaceSubrange(index * 4 ..< index * 4 + 4, with: $0) }
        try SafeTensorsTestWriter.write(entries, to: weightsURL)
    }

    /// The reproduction: one NaN in model.norm.weight made generate print 0,0,0,0.
    func testNaNInFinalNormIsRefusedAtLoad() throws {
        XCTAssertNoThrow(try LlamaModel(checkpoint: dir.path))
        try poison("model.norm.weight", index: 17, with: .nan)
        let message = loadError()
        for part in [weightsURL.path, "model.norm.weight", "index 17", "nan"] {
            XCTAssertTrue(message.contains(part), "'\(message)' lacks '\(part)'")
        }
    }

    func testInfinityInALayerIsRefusedAtLoad() throws {
        try poison("model.layers.1.mlp.down_proj.weight", index: 5, with: -.infinity)
        let message = loadError()
        XCTAssertTrue(message.contains("model.layers.1.mlp.down_proj.weight") && message.contains("-inf"), message)
    }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: configURL)
    }

    func testLayerCountThatDisagreesWithTheWeightsIsRefused() throws {
        try editConfig { $0["num_hidden_layers"] = 1 }
        let message = loadError()
        for part in [configURL.path, "num_hidden_layers", "model.layers.1.", "2 layers"] {
            XCTAssertTrue(message.contains(part), "'\(message)' lacks '\(part)'")
        }
        let ckpt = try Checkpoint(directory: dir.path)
        XCTAssertThrowsError(try ckpt.validateTensors(), "validate sees it without reading weights")
    }

    func testConfigValuesTheDecoderCannotHonourAreRefused() throws {
        let cases: [(String, Any, String)] = [
            ("max_position_embeddings", 0, "max_position_embeddings"), ("max_position_embeddings", -1, "max_position_embeddings"),
            ("bos_token_id", 128, "bos_token_id"), ("eos_token_id", [2, 500], "eos_token_id"), ("eos_token_id", -3, "eos_token_id"),
            ("rms_norm_eps", 0, "rms_norm_eps"),
        ]
        let original = try Data(contentsOf: configURL)
        for (key, value, field) in cases {
            try original.write(to: configURL)
            try editConfig { $0[key] = value }
            let message = loadError()
            XCTAssertTrue(message.contains(configURL.path) && message.contains(field), "\(key)=\(value): '\(message)'")
        }
        try original.write(to: configURL)
        try editConfig { $0["rope_scaling"] = ["rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0,
                                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64] }
        XCTAssertTrue(loadError().contains("high_freq_factor"))
    }

    // MARK: The forward pass

    func tinyModel(_ edit: (inout ModelWeights) -> Void = { _ in }) throws -> LlamaModel {
        let c = try ModelConfig(hiddenSize: 32, intermediateSize: 64, layers: 3, heads: 4, kvHeads: 2, vocabSize: 50)
        var w = ModelWeights.synthetic(c, seed: 5)
        edit(&w)
        return LlamaModel(config: c, weights: w)
    }

    func nonFinite(_ body: () throws -> Void) -> NonFiniteError? {
        do { try body(); XCTFail("expected a NonFiniteError"); return nil } catch let e as NonFiniteError { return e } catch {
            XCTFail("unexpected \(error)"); return nil
        }
    }

    func testForwardCheckedNamesTheLayerAndPosition() throws {
        let clean = try tinyModel()
        XCTAssertNoThrow(try clean.forwardChecked([1, 2, 3, 4, 5], startPosition: 0, cache: clean.makeCache(), phase: .prefill))
        // Token 7's embedding row is NaN: it shows after layer 0. The position is the first row
        // holding a NaN (a NaN key also reaches earlier rows of its attention block, as
        // 0 x NaN = NaN defeats the causal mask: here it reaches the first row).
        let embedding = try tinyModel { $0.embedding[7 * 32 + 3] = .nan }
        let e1 = nonFinite { _ = try embedding.forwardChecked([7, 2, 3, 1, 5], startPosition: 10, cache: embedding.makeCache(), phase: .prefill) }
        XCTAssertEqual(e1?.layer, 0)
        XCTAssertEqual(e1?.position, 10)
        XCTAssertTrue(e1?.localizedDescription.hasPrefix("non-finite logits at layer 0/position 10") ?? false, "\(String(describing: e1))")
        let cache = embedding.makeCache()
        _ = try embedding.forwardChecked([1, 2, 3], startPosition: 0, cache: cache, phase: .prefill)
        let e1b = nonFinite { _ = try embedding.forwardChecked([7], startPosition: 3, cache: cache, phase: .decode) }
        XCTAssertEqual(e1b?.position, 3)
        XCTAssertEqual(e1b?.layer, 0)
        // A layer's MLP: every position, first at the first row.
        let layer2 = try tinyModel { $0.layers[2].wDown[100] = .infinity }
        let e2 = nonFinite { _ = try layer2.forwardChecked([1, 2], startPosition: 0, cache: layer2.makeCache(), phase: .prefill) }
        XCTAssertEqual(e2?.layer, 2)
        // The final norm: every layer is fine, the logits are not.
        let head = try tinyModel { $0.finalNorm[0] = .nan }
        let headCache = head.makeCache()
        let e3 = nonFinite { _ = try head.forwardChecked([4], startPosition: 0, cache: headCache, phase: .prefill) }
        XCTAssertNil(e3?.layer)
        XCTAssertTrue(e3?.localizedDescription.contains("LM head") ?? false)
        // Decode steps are checked too; the unchecked forward still returns (NaN) logits.
        let e4 = nonFinite { _ = try head.forwardChecked([5], startPosition: 1, cache: headCache, phase: .decode) }
        XCTAssertEqual(e4?.position, 1)
        XCTAssertFalse(Ops.allFinite(head.forward([6], startPosition: 2, cache: headCache, phase: .decode)))
    }

    /// The reproduction at the API level: generation stops instead of returning argmax(NaN) = 0.
    func testGenerationStopsAtNonFiniteLogits() throws {
        let lm = try tinyModel { $0.finalNorm[1] = .nan }
        let r = lm.generate(prompt: [1, 2, 3], maxNewTokens: 4)
        XCTAssertNotNil(r.nonFinite)
        XCTAssertEqual(r.tokens, [], "no token is chosen from NaN logits")
        let ok = try tinyModel().generate(prompt: [1, 2, 3], maxNewTokens: 4)
        XCTAssertNil(ok.nonFinite)
        XCTAssertEqual(ok.tokens.count, 4)
    }
}
