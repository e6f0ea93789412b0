import XCTest
@testable import KVTensor

/// Kernels against brute-force references written independently here.
final class NumericsTests: XCTestCase {
    func testLinearMatchesNaiveProduct() {
        var rng = SeededRandom(seed: 1)
        for rows in [1, 5] {
            let inDim = 37, outDim = 23
            let x = (0..<rows * inDim).map { _ in rng.nextNormal() }
            let w = (0..<outDim * inDim).map { _ in rng.nextNormal() }
            var y = [Float](repeating: 0, count: rows * outDim)
            x.withUnsafeBufferPointer { xb in w.withUnsafeBufferPointer { wb in y.withUnsafeMutableBufferPointer { yb in
                BLAS.linear(xb.baseAddress!, rows: rows, inDim: inDim, weight: wb.baseAddress!, outDim: outDim, into: yb.baseAddress!)
            } } }
            for r in 0..<rows { for o in 0..<outDim {
                var s: Double = 0
                for i in 0..<inDim { s += Double(x[r * inDim + i]) * Double(w[o * inDim + i]) }
                XCTAssertEqual(Double(y[r * outDim + o]), s, accuracy: 1e-4)
            } }
        }
    }

    func testSoftmaxAndLogSumExp() {
        var x: [Float] = [1, 2, 3, -1000]
        let lse = x.withUnsafeMutableBufferPointer { Ops.softmax($0.baseAddress!, count: 4) }
        let ref = [1.0, 2.0, 3.0].map { exp($0) }
        let z = ref.reduce(0, +)
        for i in 0..<3 { XCTAssertEqual(Double(x[i]), ref[i] / z, accuracy: 1e-6) }
        XCTAssertEqual(x[3], 0)
        XCTAssertEqual(Double(lse), log(z), accuracy: 1e-5)
    }

    func testRoPEIsARotationAndRelative() {
        // <R(p)q, R(p')k> depends only on p - p' (the property attention relies on).
        let d = 16
        let rope = RotaryEmbedding(headDim: d, theta: 10000)
        var rng = SeededRandom(seed: 2)
        let q = (0..<d).map { _ in rng.nextNormal() }, k = (0..<d).map { _ in rng.nextNormal() }
        func rotated(_ v: [Float], _ p: Int) -> [Float] {
            var v = v
            v.withUnsafeMutableBufferPointer { rope.apply($0.baseAddress!, rows: 1, heads: 1, positions: [p]) }
            return v
        }
        func dot(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map(*).reduce(0, +) }
        XCTAssertEqual(dot(rotated(q, 10), rotated(k, 7)), dot(rotated(q, 103), rotated(k, 100)), accuracy: 1e-3)
        XCTAssertEqual(dot(rotated(q, 5), rotated(q, 5)), dot(q, q), accuracy: 1e-3)
    }

    func testLlama3ScalingMatchesFormula() {
        let d = 64
        let base = RotaryEmbedding(headDim: d, theta: 500000)
        let scaled = RotaryEmbedding(headDim: d, theta: 500000,
                                     scaling: .llama3(factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 8192))
        for (f, s) in zip(base.invFreq, scaled.invFreq) {
            let wavelen = 2 * Double.pi / Double(f)
            if wavelen < 8192.0 / 4 { XCTAssertEqual(s, f) }
            else if wavelen > 8192 { XCTAssertEqual(Double(s), Double(f) / 8, accuracy: Double(f) * 1e-6) }
            else { XCTAssertTrue(s < f && Double(s) > Double(f) / 8) }
        }
    }

    func testHalfAndBFloat16Conversions() {
        XCTAssertEqual(Precision.halfToFloat(0x3C00), 1)
        XCTAssertEqual(Precision.halfToFloat(0xC000), -2)
        XCTAssertEqual(Precision.halfToFloat(0x0001), Float(5.9604645e-08))
        XCTAssertEqual(Precision.halfToFloatSoftware(0x3555), Precision.halfToFloat(0x3555))
        XCTAssertEqual(Precision.bfloat16ToFloat(0x3F80), 1)
        XCTAssertEqual(Precision.floatToBFloat16(1.00390625), 0x3F80)   // ties to even
        XCTAssertEqual(Precision.floatToBFloat16(3.140625), 0x4049)
    }

    func testSymmetricEigenRecoversMatrix() throws {
        // A = V diag(w) V^T for a random symmetric matrix; eigenvalues descending.
        var rng = SeededRandom(seed: 3)
        let n = 6
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { let v = Double(rng.nextNormal()); a[i * n + j] = v; a[j * n + i] = v } }
        let (w, v) = try LAPACK.symmetricEigen(a, n: n)
        XCTAssertEqual(w, w.sorted(by: >))
        for i in 0..<n { for j in 0..<n {
            var s = 0.0
            for k in 0..<n { s += v[i * n + k] * w[k] * v[j * n + k] }
            XCTAssertEqual(s, a[i * n + j], accuracy: 1e-9)
        } }
    }

    func testTopKOrderAndTies() {
        XCTAssertEqual(topK([1, 5, 3, 5, 2], 3), [1, 3, 2])
        XCTAssertEqual(topK([1, 2], 5), [1, 0])
        XCTAssertEqual(topK([], 2), [])
    }

    func testSeededRandomIsDeterministicAndForksDiffer() {
        var a = SeededRandom(seed: 42), b = SeededRandom(seed: 42)
        XCTAssertEqual((0..<5).map { _ in a.next() }, (0..<5).map { _ in b.next() })
        var f1 = SeededRandom(seed: 42).fork(1), f2 = SeededRandom(seed: 42).fork(2)
        XCTAssertNotEqual(f1.next(), f2.next())
    }
}
