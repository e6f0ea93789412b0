import XCTest
import KVModel

/// Broken or mismatched checkpoints get an error naming the file and the problem:
/// never a crash, never a huge allocation.
final class CorruptCheckpointTests: XCTestCase {
    var dir: URL!
    var weights: URL { dir.appendingPathComponent("model.safetensors") }
    var config: URL { dir.appendingPathComponent("config.json") }

    override func setUpWithError() throws {
        dir = Fixtures.tempDir("corrupt")
        let src = URL(fileURLWithPath: Fixtures.hf("llama_gqa"))
        for f in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Loads the folder and returns the error text (fails the test if loading succeeds).
    func loadError(file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try LlamaModel(checkpoint: dir.path)
            XCTFail("expected the load to fail", file: file, line: line)
            return ""
        } catch {
            return error.localizedDescription
        }
    }

    func assertError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        let message = loadError(file: file, line: line)
        for f in fragments { XCTAssertTrue(message.contains(f), "'\(message)' lacks '\(f)'", file: file, line: line) }
    }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        var json = try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as! [String: Any]
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: config)
    }

    func testValidCopyLoads() throws { XCTAssertNoThrow(try LlamaModel(checkpoint: dir.path)) }

    func testTruncatedFile() throws {
        let data = try Data(contentsOf: weights)
        try data.prefix(data.count / 2).write(to: weights)
        assertError([weights.path, "out of bounds", "truncated"])
    }

    func testFileShorterThanLengthField() throws {
        try Data([1, 2, 3]).write(to: weights)
        assertError([weights.path, "shorter than the 8-byte header length"])
    }

    func testAbsurdHeaderLength() throws {
        let entries = try SafeTensorsTestWriter.read(weights)
        try SafeTensorsTestWriter.write(entries, to: weights, lengthOverride: 1 << 62)
        assertError([weights.path, "absurd"])
    }

    func testHeaderLongerThanFile() throws {
        let entries = try SafeTensorsTestWriter.read(weights)
        try SafeTensorsTestWriter.write(entries, to: weights, lengthOverride: 50_000_000)
        assertError([weights.path, "exceeds the file size"])
    }

    func testHeaderNotJSON() throws {
        try SafeTensorsTestWriter.write([], to: weights, headerOverride: "{not json")
        assertError([weights.path, "not valid JSON"])
    }

    func testOffsetsOutOfBounds() throws {
        let header = "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[64],\"data_offsets\":[0,1000256]}}"
        try SafeTensorsTestWriter.write([], to: weights, headerOverride: header)
        assertError([weights.path, "model.norm.weight", "out of bounds"])
    }

    func testHugeShapeIsRejectedBeforeAllocation() throws {
        let header = "{\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[1048576,1048576],\"data_offsets\":[0,256]}}"
        try SafeTensorsTestWriter.write([.init(name: "x", dtype: "F32", shape: [64], data: Data(count: 256))],
                                        to: weights, headerOverride: header)
        assertError([weights.path, "model.norm.weight", "too large"])
    }

    func testMissingTensor() throws {
        let entries = try SafeTensorsTestWriter.read(weights).filter { $0.name != "model.layers.1.mlp.up_proj.weight" }
        try SafeTensorsTestWriter.write(entries, to: weights)
        assertError(["missing tensor 'model.layers.1.mlp.up_proj.weight'", weights.path])
    }

    func testShapeDisagreesWithConfig() throws {
        try editConfig { $0["intermediate_size"] = 96 }
        assertError([weights.path, "model.layers.0.mlp.gate_proj.weight", "[128, 64]", "[96, 64]"])
    }

    func testUnsupportedModelType() throws {
        try editConfig { $0["model_type"] = "gpt2" }
        assertError([config.path, "model_type", "gpt2", "llama, mistral, qwen2"])
    }

    func testUnsupportedDType() throws {
        var entries = try SafeTensorsTestWriter.read(weights)
        let i = entries.firstIndex { $0.name == "model.norm.weight" }!
        entries[i].dtype = "I8"; entries[i].data = entries[i].data.prefix(64)
        try SafeTensorsTestWriter.write(entries, to: weights)
        assertError([weights.path, "model.norm.weight", "I8", "supported: F32, F16, BF16"])
    }

    func testMissingWeightsFile() throws {
        try FileManager.default.removeItem(at: weights)
        assertError(["model.safetensors", "not found"])
    }

    func testConfigFieldOfWrongType() throws {
        try editConfig { $0["num_attention_heads"] = "four" }
        assertError([config.path, "num_attention_heads", "expected an integer"])
    }

    func testConfigNotJSON() throws {
        try "{".write(to: config, atomically: true, encoding: .utf8)
        assertError([config.path, "not valid JSON"])
    }

    func testHeadsNotDivisibleByKVHeads() throws {
        try editConfig { $0["num_key_value_heads"] = 3 }
        assertError([config.path, "num_key_value_heads", "divisor"])
    }

    func testUnsupportedRopeScaling() throws {
        try editConfig { $0["rope_scaling"] = ["rope_type": "yarn", "factor": 4.0] }
        assertError([config.path, "rope_scaling", "yarn"])
    }

    func testShardIndexNamesMissingFile() throws {
        try FileManager.default.removeItem(at: weights)
        let index = "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\"}}"
        try index.write(to: dir.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        assertError(["model-00001-of-00002.safetensors", "not found"])
    }
}
