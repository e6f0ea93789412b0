import Foundation
import XCTest
import KVTestSupport
@testable import KVGGUF

/// Every supported ggml type decoded as gguf-py's numpy dequantization decodes it (the port of
/// ggml-quants.c that transformers uses), on random blocks from
/// scripts/fixtures/make_gguf_dequant_fixtures.py. Same products in the same order: bit-exact.
final class DequantizeTests: XCTestCase {
    struct Case: Decodable { let ggml_type: UInt32; let blocks: Int; let block_bytes: Int; let bytes: String; let values: String }
    struct File: Decodable { let types: [String: Case] }

    static func fixture() throws -> File {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/dequant.json")
        return try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
    }

    func testEverySupportedTypeMatchesGGUFPy() throws {
        let file = try Self.fixture()
        XCTAssertEqual(Set(file.types.keys), Set(GGMLType.supported.map(\.name)), "the fixture covers exactly the supported types")
        for (name, c) in file.types.sorted(by: { $0.key < $1.key }) {
            let type = try XCTUnwrap(GGMLType(rawValue: c.ggml_type), name)
            XCTAssertEqual(type.name, name)
            XCTAssertEqual(type.blockBytes, c.block_bytes, name)
            let raw = try XCTUnwrap(Data(base64Encoded: c.bytes))
            let want = try XCTUnwrap(Data(base64Encoded: c.values)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            XCTAssertEqual(raw.count, c.blocks * type.blockBytes, name)
            XCTAssertEqual(want.count, c.blocks * type.blockSize, name)
            var got = [Float](repeating: .nan, count: want.count)
            // Through an unaligned copy: real GGUF blocks of 18/20/22 bytes sit at odd addresses.
            var shifted = [UInt8](repeating: 0, count: raw.count + 1)
            shifted.replaceSubrange(1..., with: raw)
            shifted.withUnsafeBytes { src in
                got.withUnsafeMutableBufferPointer { GGMLDequantize.row(type, src.baseAddress! + 1, into: $0.baseAddress!, count: want.count) }
            }
            var mismatches = 0, first = -1
            for i in 0..<want.count where got[i].bitPattern != want[i].bitPattern {
                mismatches += 1
                if first < 0 { first = i }
            }
            XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(want.count) values differ from gguf-py" +
                           (first >= 0 ? " (first at \(first): \(got[first]) vs \(want[first]))" : ""))
            // Block decoder and row decoder agree, block by block.
            let d = try XCTUnwrap(type.decoder)
            var one = [Float](repeating: 0, count: type.blockSize)
            raw.withUnsafeBytes { src in
                one.withUnsafeMutableBufferPointer { d.decode(src.baseAddress! + (c.blocks - 1) * type.blockBytes, into: $0.baseAddress!) }
            }
            XCTAssertEqual(one, Array(got.suffix(type.blockSize)), name)
        }
    }

    /// A tensor of many rows decoded through GGUFFile.floats (multi-threaded path) equals row-by-row decoding.
    func testLargeTensorEqualsRowByRow() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-dq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let c = try XCTUnwrap(Self.fixture().types["Q4_K"])
        let block = [UInt8](try XCTUnwrap(Data(base64Encoded: c.bytes)))
        let rows = 4200, perRow = 1   // 4200 x 256 elements > the 2^20 threshold of the threaded path
        var bytes: [UInt8] = []
        for r in 0..<rows { let b = r % c.blocks; bytes += block[(b * 144)..<((b + 1) * 144)] }
        var w = GGUFWriter()
        w.tensors = [("t", [256 * perRow, rows], .q4_K, bytes)]
        let p = dir.appendingPathComponent("t.gguf").path
        try w.write(to: p)
        let f = try GGUFFile(path: p)
        let all = try f.floats(try XCTUnwrap(f.tensor("t")))
        let want = try XCTUnwrap(Data(base64Encoded: c.values)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(all.count, rows * 256)
        for r in [0, 1, 2, 2099, 4199] {
            let b = r % c.blocks
            XCTAssertEqual(Array(all[(r * 256)..<((r + 1) * 256)]), Array(want[(b * 256)..<((b + 1) * 256)]), "row \(r)")
        }
    }

    /// An unsupported type is an error naming the file, the tensor, the type and the supported types.
    func testUnsupportedTypeIsAClearError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-dq-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for type in [GGMLType.iq2_xxs, .tq1_0, .q8_1, .mxfp4, .iq4_nl, .q8_K] {
            var w = GGUFWriter()
            w.tensors = [("blk.0.attn_q.weight", [type.blockSize], type, [UInt8](repeating: 0, count: type.blockBytes))]
            let p = dir.appendingPathComponent("\(type.name).gguf").path
            try w.write(to: p)
            let f = try GGUFFile(path: p)
            XCTAssertFalse(type.isSupported)
            XCTAssertThrowsError(try f.floats(f.tensors[0])) { e in
                let m = (e as? GGUFError)?.errorDescription ?? "\(e)"
                for part in [p, "blk.0.attn_q.weight", type.name, "supported: F32, F16, BF16, Q4_0", "Q6_K"] {
                    XCTAssertTrue(m.contains(part), "\(m) should contain '\(part)'")
                }
            }
        }
    }
}
