import Foundation
import XCTest
import KVCacheCore
import KVGGUF
import KVModel
import KVTensor
import KVTestSupport

/// Lockstep decoding of models whose matrices stay packed or 16-bit (`weights: stored`): each
/// sequence's product runs through the matrix-vector kernel of single-sequence decoding
/// (`WeightMatrix.productsShared`), so a sequence decoded in a batch equals it decoded alone, bit
/// for bit, for every storage type and on one or two threads.
final class PackedBatchDecodeTests: XCTestCase {
    /// Sequence i's logits of 4 lockstep steps next to those of decoding it alone, for 3 sequences
    /// with prompts of different lengths.
    func check(_ model: LlamaModel, threads: Int, _ name: String) throws {
        BLAS.setThreads(threads)
        defer { BLAS.setThreads(1) }
        let V = model.config.vocabSize, n = 3
        let prompts = (0..<n).map { i in (0..<(9 + 5 * i)).map { ($0 * 31 + 7 * i + 3) % V } }
        let batched = prompts.map { _ in model.makeCache() }, alone = prompts.map { _ in model.makeCache() }
        for (i, p) in prompts.enumerated() {
            _ = try model.forwardChecked(p, startPosition: 0, cache: batched[i], phase: .prefill)
            _ = try model.forwardChecked(p, startPosition: 0, cache: alone[i], phase: .prefill)
        }
        for step in 0..<4 {
            let tokens = (0..<n).map { (step * 13 + $0 * 5 + 1) % V }
            let positions = prompts.map { $0.count + step }
            let rows = model.decodeBatchChecked(tokens, positions: positions, caches: batched)
            for i in 0..<n {
                let single = try model.forwardChecked([tokens[i]], startPosition: positions[i], cache: alone[i], phase: .decode)
                XCTAssertEqual(try rows[i].get().map(\.bitPattern), single.map(\.bitPattern), "\(name), \(threads) threads, sequence \(i), step \(step)")
                XCTAssertEqual(batched[i].stats, alone[i].stats)
            }
        }
    }

    func testPackedAndHalfModelsDecodeInABatchAsAlone() throws {
        var types: Set<GGMLType> = []
        for f in ["llama_Q4_1", "llama_Q8_0", "llama_F16", "llama_BF16", "llama_k_Q4_K", "qwen2_k_Q6_K", "qwen2_Q5_0"] {
            let path = GGUFParityTests.dir.appendingPathComponent(f + ".gguf").path
            let model = try ModelSource.parse(path).load(weights: .stored)
            types.formUnion(model.weights.matrices.map(\.type))
            for threads in [1, 2] { try check(model, threads: threads, f) }
        }
        // The fixtures really hold packed and 16-bit matrices (the test could fail).
        XCTAssertTrue(types.isSuperset(of: [.q4_1, .q8_0, .f16, .bf16, .q4_K, .q6_K, .q5_0]), "\(types.map(\.name))")
    }

    /// The load-time NaN/inf scan of packed matrices (rows dequantized transiently) finds what the
    /// scan of the Float32 dequantization finds: same tensor, same index in HF layout (a llama Q
    /// matrix, whose rows the loader un-permutes), same message.
    func testPackedScanNamesTheIndexTheFloat32ScanNames() throws {
        let source = GGUFParityTests.dir.appendingPathComponent("llama_Q8_0.gguf").path
        var w = try GGUFWriter(reading: source)
        let i = w.tensors.firstIndex { $0.name == "blk.0.attn_q.weight" && $0.type == .q8_0 }!
        let rowBytes = w.tensors[i].bytes.count / w.tensors[i].dims[1]
        let block = 3 * rowBytes                                       // GGUF row 3, first block: F16 scale
        w.tensors[i].bytes[block] = 0x00; w.tensors[i].bytes[block + 1] = 0x7E   // F16 NaN
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-packedscan-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("q8nan.gguf").path
        try w.write(to: path)
        func message(_ p: WeightPrecision) -> String {
            do { _ = try ModelSource.parse(path).load(weights: p); return "loaded" } catch { return error.localizedDescription }
        }
        let (stored, f32) = (message(.stored), message(.f32))
        XCTAssertEqual(stored, f32)
        XCTAssertTrue(stored.contains(path) && stored.contains("'blk.0.attn_q.weight' (model.layers.0.self_attn.q_proj.weight)")
                      && stored.contains("nan"), stored)
        // GGUF row 3 is HF row 1 + d/2 of head 0 (llama's Q/K permutation), column 0.
        let cols = w.tensors[i].dims[0]
        let d = try ModelSource.parse(source).load().config.headDim
        XCTAssertTrue(stored.contains("flat index \((1 + d / 2) * cols);"), stored)
    }
}
