import Foundation
import XCTest
import KVTestSupport
@testable import KVGGUF

final class GGUFFileTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("gguf-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func sample() -> GGUFWriter {
        var w = GGUFWriter()
        w.metadata = [("general.architecture", .string("llama")), ("llama.block_count", .uint(2)),
                      ("llama.rope.freq_base", .float(10000)), ("tokenizer.ggml.tokens", .array([.string("a"), .string("b")]))]
        let f32: [Float] = [1, 2, 3, 4, 5, 6]
        w.tensors = [("x.weight", [3, 2], .f32, f32.withUnsafeBytes { Array($0) }),
                     ("y.weight", [32, 1], .q8_0, [UInt8](repeating: 1, count: 34))]
        return w
    }

    func open(_ w: GGUFWriter, _ name: String = "m.gguf") throws -> GGUFFile {
        let p = dir.appendingPathComponent(name).path
        try w.write(to: p)
        return try GGUFFile(path: p)
    }

    func testParsesHeaderMetadataAndTensors() throws {
        let f = try open(sample())
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f["general.architecture"]?.string, "llama")
        XCTAssertEqual(f["llama.block_count"]?.int, 2)
        XCTAssertEqual(f["llama.rope.freq_base"]?.double, 10000)
        XCTAssertEqual(f["tokenizer.ggml.tokens"]?.strings, ["a", "b"])
        XCTAssertEqual(f.tensors.map(\.name), ["x.weight", "y.weight"])
        let x = try XCTUnwrap(f.tensor("x.weight"))
        XCTAssertEqual(x.shape, [2, 3])
        XCTAssertEqual(x.byteCount, 24)
        let floats = f.data(x).bindMemory(to: Float.self)
        XCTAssertEqual(Array(floats), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(f.tensor("y.weight")?.byteCount, 34)
        XCTAssertEqual(f.dataOffset % 32, 0)
    }

    /// Each corruption gets a GGUFError whose message names the problem (never a crash).
    func testCorruptHeadersAreClearErrors() throws {
        let good = sample().bytes()
        func expect(_ bytes: [UInt8], _ fragment: String, line: UInt = #line) {
            let p = dir.appendingPathComponent("bad\(line).gguf").path
            FileManager.default.createFile(atPath: p, contents: Data(bytes))
            XCTAssertThrowsError(try GGUFFile(path: p), line: line) { e in
                let m = (e as? GGUFError)?.errorDescription ?? "\(e)"
                XCTAssertTrue(m.contains(fragment) && m.contains(p), "\(m) should name the file and say '\(fragment)'", line: line)
            }
        }
        var b = good; b[0] = 0x00
        expect(b, "bad magic")
        b = good; b[4] = 1
        expect(b, "version 1")
        b = good; b[4] = 9
        expect(b, "unknown GGUF version 9")
        expect(Array(good.prefix(10)), "shorter than a GGUF header")
        var w = sample(); w.kvCountOverride = 1 << 40
        expect(w.bytes(), "metadata count")
        w = sample(); w.tensorCountOverride = 1 << 40
        expect(w.bytes(), "tensor count")
        w = sample(); w.tensors[0].2 = .q4_0
        expect(w.bytes(), "not a multiple")
        expect(Array(good.prefix(good.count - 40)), "past the end of the file")
        // An absurd string length in the first key.
        b = good; for i in 24..<32 { b[i] = 0xFF }
        expect(b, "string length")
        w = sample(); w.metadata.append(("general.alignment", .uint(24)))
        expect(w.bytes(), "power of two")
        w = sample(); w.metadata.append(("llama.block_count", .uint(3)))
        expect(w.bytes(), "appears twice")
        w = sample(); w.tensors[1].2 = .q8_0; w.tensors[1].1 = [32, 1, 1, 1, 1]
        expect(w.bytes(), "dimensions")
    }

    func testUnknownTensorTypeAndValueType() throws {
        var bytes = sample().bytes()
        // Patch the first tensor's type field: find "x.weight" then skip n_dims and dims.
        let name = Array("x.weight".utf8)
        let at = (0..<bytes.count - name.count).first { Array(bytes[$0..<$0 + name.count]) == name }!
        let typeAt = at + name.count + 4 + 16
        bytes[typeAt] = 99
        let p = dir.appendingPathComponent("t.gguf").path
        FileManager.default.createFile(atPath: p, contents: Data(bytes))
        XCTAssertThrowsError(try GGUFFile(path: p)) { XCTAssertTrue("\($0.localizedDescription)".contains("unknown ggml type 99")) }
        // First metadata value's type field sits after the key.
        var b2 = sample().bytes()
        let keyLen = "general.architecture".utf8.count
        b2[24 + 8 + keyLen] = 77
        FileManager.default.createFile(atPath: p, contents: Data(b2))
        XCTAssertThrowsError(try GGUFFile(path: p)) { XCTAssertTrue("\($0.localizedDescription)".contains("unknown metadata value type 77")) }
    }
}
