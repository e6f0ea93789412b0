import Foundation
import XCTest
@testable import KVGGUF

/// The fused matrix-vector kernels of every supported type against the dot products of the values
/// gguf-py dequantizes (Fixtures/dequant.json's random blocks, rearranged into matrices of several
/// rows), computed in Double: equal up to Float32 summation order.
final class RowKernelTests: XCTestCase {
    /// Rows of `blocksPerRow` blocks drawn from the fixture's blocks in a scrambled order.
    struct Matrix { let type: GGMLType; let rows: Int; let cols: Int; let bytes: [UInt8]; let values: [Float] }

    static func matrix(_ name: String, rows: Int, blocksPerRow k: Int) throws -> Matrix {
        let c = try XCTUnwrap(DequantizeTests.fixture().types[name])
        let type = try XCTUnwrap(GGMLType(rawValue: c.ggml_type))
        let raw = [UInt8](try XCTUnwrap(Data(base64Encoded: c.bytes)))
        let vals = try XCTUnwrap(Data(base64Encoded: c.values)).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        var bytes: [UInt8] = [], values: [Float] = []
        for r in 0..<rows {
            for b in 0..<k {
                let src = (r * 5 + b * 3 + r * b) % c.blocks
                bytes += raw[(src * type.blockBytes)..<((src + 1) * type.blockBytes)]
                values += vals[(src * type.blockSize)..<((src + 1) * type.blockSize)]
            }
        }
        return Matrix(type: type, rows: rows, cols: k * type.blockSize, bytes: bytes, values: values)
    }

    /// Kernel output for x, from a copy of the rows at an odd address, plus the Double reference
    /// and sum_c |w x| per row (the scale a summation-order difference is measured against).
    func check(_ name: String, rows: Int, blocksPerRow k: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let m = try Self.matrix(name, rows: rows, blocksPerRow: k)
        var rng = SystemRandomNumberGenerator()
        let x = (0..<m.cols).map { _ in Float.random(in: -1...1, using: &rng) }
        let rowBytes = m.bytes.count / rows
        var aux = [Float](repeating: 0, count: max(1, m.cols / 32))
        if GGMLRowProducts.needsBlockSums(m.type) { GGMLRowProducts.blockSums(x, cols: m.cols, into: &aux) }
        var shifted = [UInt8](repeating: 0, count: m.bytes.count + 1)
        shifted.replaceSubrange(1..., with: m.bytes)
        var y = [Float](repeating: 0.5, count: rows)
        var yAcc = y
        shifted.withUnsafeBytes { w in
            GGMLRowProducts.rows(m.type, w.baseAddress! + 1, rowBytes: rowBytes, range: 0..<rows, x: x, aux: aux,
                                 cols: m.cols, y: &y, accumulate: false)
            GGMLRowProducts.rows(m.type, w.baseAddress! + 1, rowBytes: rowBytes, range: 1..<rows, x: x, aux: aux,
                                 cols: m.cols, y: &yAcc, accumulate: true)
        }
        for r in 0..<rows {
            var ref = 0.0, mag = 0.0
            for c in 0..<m.cols {
                let p = Double(m.values[r * m.cols + c]) * Double(x[c])
                ref += p
                mag += abs(p)
            }
            XCTAssertLessThan(abs(Double(y[r]) - ref), 1e-5 * mag + 1e-30, "\(name) row \(r): \(y[r]) vs \(ref)", file: file, line: line)
            let accRef = r == 0 ? 0.5 : 0.5 + ref
            XCTAssertLessThan(abs(Double(yAcc[r]) - accRef), 1e-5 * (mag + 0.5), "\(name) row \(r), accumulate", file: file, line: line)
        }
    }

    func testEveryTypeMatchesDequantizedDotProducts() throws {
        // 576 columns for the 32-element types (SmolLM2's width), 768 for the K-quants, odd widths
        // for the unblocked types (vector tails).
        for name in ["F32", "F16", "BF16"] { try check(name, rows: 5, blocksPerRow: 67) }
        for name in ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"] {
            try check(name, rows: 6, blocksPerRow: 18)
            try check(name, rows: 3, blocksPerRow: 3)       // an odd block count: the one-block tail
        }
        for name in ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"] { try check(name, rows: 4, blocksPerRow: 3) }
    }

    func testFusedKernelsCoverTheCommonTypes() {
        for t in [GGMLType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1, .q5_0, .q5_1, .q4_K, .q5_K, .q6_K] {
            XCTAssertTrue(GGMLRowProducts.hasFusedKernel(t), t.name)
        }
        XCTAssertTrue(GGMLType.supported.allSatisfy { $0.isSupported })
    }
}
