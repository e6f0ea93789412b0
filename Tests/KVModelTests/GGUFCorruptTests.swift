import Foundation
import XCTest
import KVTestSupport
import KVGGUF
import KVModel

/// Corrupt or unsupported GGUF models at the loader level (the container parser's own cases —
/// magic, version, counts, string lengths, alignment, duplicates, unknown types, truncation — are in
/// KVGGUFTests). Each is a clear error naming the file and the problem: never a crash, never a
/// huge allocation.
final class GGUFCorruptTests: XCTestCase {
    var dir: URL!
    let source = GGUFParityTests.dir.appendingPathComponent("llama_F32.gguf").path

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Writes a changed copy of the llama fixture and expects loading it to fail with every fragment.
    func expect(_ fragments: [String], line: UInt = #line, _ change: (inout GGUFWriter) -> Void) throws {
        var w = try GGUFWriter(reading: source)
        change(&w)
        let path = dir.appendingPathComponent("bad\(line).gguf").path
        try w.write(to: path)
        XCTAssertThrowsError(try ModelSource.parse(path).load(), line: line) { e in
            let m = (e as? LocalizedError)?.errorDescription ?? "\(e)"
            for f in [path] + fragments {
                XCTAssertTrue(m.contains(f), "'\(m)' should contain '\(f)'", line: line)
            }
        }
    }

    func testTheUnchangedCopyLoads() throws {
        let w = try GGUFWriter(reading: source)
        let path = dir.appendingPathComponent("good.gguf").path
        try w.write(to: path)
        let m = try ModelSource.parse(path).load()
        XCTAssertEqual(m.config.layers, 1)
    }

    /// Issue 16 for GGUF files: a NaN or infinity in a weight (or in a quantized block's scale)
    /// is refused at load, naming the file, the GGUF tensor (and its HF name) and the index, as the
    /// safetensors loader does; not a model that prints token 0.
    func testNonFiniteWeightsAreRefusedAtLoad() throws {
        try expect(["tensor 'output_norm.weight' (model.norm.weight)", "nan", "flat index 5"]) { w in
            let i = w.tensors.firstIndex { $0.name == "output_norm.weight" }!
            withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { w.tensors[i].bytes.replaceSubrange(20 ..< 24, with: $0) }
        }
        try expect(["'blk.0.ffn_down.weight'", "-inf"]) { w in
            let i = w.tensors.firstIndex { $0.name == "blk.0.ffn_down.weight" }!
            withUnsafeBytes(of: (-Float.infinity).bitPattern.littleEndian) { w.tensors[i].bytes.replaceSubrange(0 ..< 4, with: $0) }
        }
        // Q8_0: a block is an F16 scale and 32 int8 values; an infinite scale poisons the block.
        let q8 = GGUFParityTests.dir.appendingPathComponent("llama_Q8_0.gguf").path
        var w = try GGUFWriter(reading: q8)
        let i = w.tensors.firstIndex { $0.name == "blk.0.ffn_up.weight" && $0.type == .q8_0 }!
        w.tensors[i].bytes[0] = 0x00; w.tensors[i].bytes[1] = 0x7C   // F16 +inf
        let path = dir.appendingPathComponent("q8inf.gguf").path
        try w.write(to: path)
        XCTAssertThrowsError(try ModelSource.parse(path).load()) { e in
            let m = e.localizedDescription
            XCTAssertTrue(m.contains(path) && m.contains("'blk.0.ffn_up.weight'") && m.contains("non-finite"), m)
        }
    }

    func testTensorShapeDisagreesWithMetadata() throws {
        try expect(["blk.0.ffn_gate.weight", "shape [32, 32]", "metadata implies [48, 32]"]) { $0["llama.feed_forward_length"] = .uint(48) }
        try expect(["token_embd.weight", "[32, 32]", "[40, 32]"]) { $0["llama.vocab_size"] = .uint(40) }
    }

    func testMissingTensor() throws {
        try expect(["tensor 'blk.0.attn_k.weight'", "missing"]) { w in w.tensors.removeAll { $0.name == "blk.0.attn_k.weight" } }
    }

    func testUnexpectedTensorsWhenBlockCountDisagrees() throws {
        // Two layers of tensors under a block_count of 1 would silently drop a layer.
        try expect(["unexpected tensors", "'blk.1.attn_q.weight'", "block_count"]) { w in
            w.tensors += w.tensors.filter { $0.name.hasPrefix("blk.0.") }.map { t in
                (t.name.replacingOccurrences(of: "blk.0.", with: "blk.1."), t.dims, t.type, t.bytes)
            }
        }
    }

    func testUnsupportedQuantType() throws {
        try expect(["blk.0.attn_q.weight", "IQ4_NL", "cannot dequantize", "supported: F32, F16, BF16"]) { w in
            let i = w.tensors.firstIndex { $0.name == "blk.0.attn_q.weight" }!
            w.tensors[i].type = .iq4_nl                 // [32, 32] -> 32 rows of one 18-byte block
            w.tensors[i].bytes = [UInt8](repeating: 0, count: 32 * 18)
        }
    }

    func testZeroNegativeAndAbsurdMetadata() throws {
        try expect(["llama.block_count", "1...1024", "got 0"]) { $0["llama.block_count"] = .uint(0) }
        try expect(["llama.context_length", "got 0"]) { $0["llama.context_length"] = .uint(0) }
        try expect(["llama.attention.head_count", "got -4"]) { $0["llama.attention.head_count"] = .int(-4) }
        try expect(["llama.embedding_length", "1...65536", "got 1099511627776"]) { $0["llama.embedding_length"] = .uint(1 << 40) }
        try expect(["llama.block_count", "got 18446744073709551615"]) { $0["llama.block_count"] = .uint(.max) }
        try expect(["llama.attention.head_count_kv", "a divisor of llama.attention.head_count (4)", "got 3"]) {
            $0["llama.attention.head_count_kv"] = .uint(3)
        }
        try expect(["llama.attention.layer_norm_rms_epsilon", "got -1"]) { $0["llama.attention.layer_norm_rms_epsilon"] = .float(-1) }
        try expect(["llama.rope.freq_base", "positive"]) { $0["llama.rope.freq_base"] = .float(0) }
        try expect(["tokenizer.ggml.eos_token_id", "a token id in 0..<32", "got 99"]) { $0["tokenizer.ggml.eos_token_id"] = .uint(99) }
    }

    func testMissingRequiredKey() throws {
        try expect(["llama.embedding_length", "missing"]) { $0["llama.embedding_length"] = nil }
        try expect(["general.architecture", "missing"]) { $0["general.architecture"] = nil }
    }

    func testUnsupportedArchitecture() throws {
        try expect(["general.architecture", "unsupported architecture 'gpt2'", "supported: llama, qwen2"]) { w in
            w["general.architecture"] = .string("gpt2")
            for i in w.metadata.indices where w.metadata[i].key.hasPrefix("llama.") {
                w.metadata[i].key = "gpt2." + w.metadata[i].key.dropFirst("llama.".count)
            }
        }
    }

    func testMetadataValueOfTheWrongType() throws {
        try expect(["llama.block_count", "expected an integer", "got 'two'"]) { $0["llama.block_count"] = .string("two") }
        try expect(["llama.rope.freq_base", "expected a number", "got true"]) { $0["llama.rope.freq_base"] = .bool(true) }
        try expect(["general.architecture", "expected a string", "got 7"]) { $0["general.architecture"] = .uint(7) }
    }

    func testUnsupportedRoPE() throws {
        try expect(["llama.rope.dimension_count", "partial rotary"]) { $0["llama.rope.dimension_count"] = .uint(4) }
        try expect(["llama.rope.scaling.type", "unsupported rope scaling 'yarn'"]) { $0["llama.rope.scaling.type"] = .string("yarn") }
    }

    /// Linear RoPE scaling is read as llama.cpp reads it (positions divided by the factor).
    func testLinearRoPEScalingIsRead() throws {
        var w = try GGUFWriter(reading: source)
        w["llama.rope.scaling.type"] = .string("linear")
        w["llama.rope.scaling.factor"] = .float(4)
        let path = dir.appendingPathComponent("linear.gguf").path
        try w.write(to: path)
        XCTAssertEqual(try GGUFCheckpoint(path: path).config.ropeScaling, .linear(factor: 4))
        w["llama.rope.scaling.type"] = nil
        w["llama.rope.scaling.factor"] = nil
        w["llama.rope.scale_linear"] = .float(2)
        try w.write(to: path)
        XCTAssertEqual(try GGUFCheckpoint(path: path).config.ropeScaling, .linear(factor: 2))
    }

    /// A file with the .gguf suffix that is not GGUF, and a GGUF file without the suffix.
    func testDetectionByNameAndMagic() throws {
        let fake = dir.appendingPathComponent("fake.gguf").path
        try Data("{\"not\": \"a GGUF file, but JSON that is long enough\"}".utf8).write(to: URL(fileURLWithPath: fake))
        XCTAssertThrowsError(try ModelSource.parse(fake).load()) { e in
            let m = (e as? LocalizedError)?.errorDescription ?? "\(e)"
            XCTAssertTrue(m.contains(fake) && m.contains("bad magic"), m)
        }
        let renamed = dir.appendingPathComponent("model.bin").path
        try FileManager.default.copyItem(atPath: source, toPath: renamed)
        XCTAssertEqual(try ModelSource.parse(renamed), .gguf(path: renamed))
        XCTAssertEqual(try ModelSource.parse(dir.path), .checkpoint(path: dir.path))
        let folder = dir.appendingPathComponent("odd.gguf").path   // a checkpoint folder with an odd name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        XCTAssertEqual(try ModelSource.parse(folder), .checkpoint(path: folder))
    }
}
