import Foundation
import KVGGUF
import KVTensor

/// How a model's matrices are held in memory after loading.
public enum WeightPrecision: String, Sendable, Codable, CaseIterable {
    /// As the file stores them: F16/BF16 as 16-bit, ggml blocks (Q8_0, Q4_1, Q4_K...) packed, F32 as F32.
    case stored
    /// Everything dequantized to Float32 at load (the reference the packed kernels are tested against).
    case f32
}

/// A weight matrix [rows, cols] in HF `Linear` layout ([out, in]), held in its file's precision:
/// Float32, IEEE half, bfloat16, or rows of ggml blocks exactly as a GGUF file stores them (a row
/// is `cols / blockSize` blocks; rows are contiguous).
///
/// Products (WeightMatrix+Products.swift): one activation row takes the matrix-vector kernels of
/// KVGGUF's RowKernels*.swift, which decode each block in registers and multiply at once (never writing
/// a dequantized row), split across `WorkerPool.shared`; more rows take tiles of the matrix
/// dequantized into a Float32 buffer and multiplied with sgemm. Results equal those of the
/// dequantized Float32 matrix up to summation order.
public struct WeightMatrix: @unchecked Sendable {
    public let rows: Int                 // out
    public let cols: Int                 // in
    /// Storage type: .f32, .f16, .bf16 or a ggml block type (GGMLType.supported).
    public let type: GGMLType
    /// Float32 storage (type .f32) [rows, cols].
    let floats: [Float]
    /// Every other type: rows * rowBytes bytes, 64-byte aligned.
    let packed: PackedBytes?

    /// Bytes of one row.
    public var rowBytes: Int { cols / type.blockSize * type.blockBytes }
    /// Bytes held.
    public var byteCount: Int { type == .f32 ? floats.count * 4 : rows * rowBytes }
    public var elementCount: Int { rows * cols }

    /// A Float32 matrix.
    public init(floats: [Float], rows: Int, cols: Int) {
        precondition(floats.count == rows * cols, "WeightMatrix: \(floats.count) values are not \(rows) x \(cols)")
        self.rows = rows
        self.cols = cols
        type = .f32
        self.floats = floats
        packed = nil
    }

    /// A matrix of `type` whose rows*rowBytes bytes are copied from `src` (any alignment). F32 data
    /// is copied into a Float32 array.
    public init(type: GGMLType, rows: Int, cols: Int, copying src: UnsafeRawPointer) {
        precondition(type.isSupported, "WeightMatrix: \(type.name) cannot be decoded")
        precondition(cols % type.blockSize == 0, "WeightMatrix: \(cols) columns are not whole \(type.name) blocks")
        self.rows = rows
        self.cols = cols
        if type == .f32 {
            self.type = .f32
            floats = [Float](unsafeUninitializedCapacity: rows * cols) { buf, n in
                UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src, byteCount: rows * cols * 4)
                n = rows * cols
            }
            packed = nil
        } else {
            self.type = type
            floats = []
            let bytes = rows * (cols / type.blockSize * type.blockBytes)
            let p = PackedBytes(count: bytes)
            p.base.copyMemory(from: src, byteCount: bytes)
            packed = p
        }
    }

    /// The same matrix with its rows reordered: row i of the result is row `order[i]` of this one.
    public func reorderingRows(_ order: [Int]) -> WeightMatrix {
        precondition(order.count == rows && Set(order).count == rows && order.allSatisfy { $0 >= 0 && $0 < rows },
                     "reorderingRows: not a permutation of \(rows) rows")
        if type == .f32 {
            var out = [Float](repeating: 0, count: floats.count)
            floats.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { d in
                for (i, r) in order.enumerated() { (d.baseAddress! + i * cols).update(from: s.baseAddress! + r * cols, count: cols) }
            } }
            return WeightMatrix(floats: out, rows: rows, cols: cols)
        }
        let rb = rowBytes, src = packed!.base
        let out = PackedBytes(count: byteCount)
        for (i, r) in order.enumerated() { (out.base + i * rb).copyMemory(from: src + r * rb, byteCount: rb) }
        return WeightMatrix(type: type, rows: rows, cols: cols, packed: out)
    }

    private init(type: GGMLType, rows: Int, cols: Int, packed: PackedBytes) {
        self.rows = rows
        self.cols = cols
        self.type = type
        floats = []
        self.packed = packed
    }

    /// Decodes rows r.lowerBound..<r.upperBound into out [r.count, cols] (Float32), as the file's
    /// reference dequantization does (ggml's `dequantize_row_*`, hardware half conversion).
    public func dequantizeRows(_ r: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(r.lowerBound >= 0 && r.upperBound <= rows, "dequantizeRows: \(r) outside 0..<\(rows)")
        let n = r.count * cols
        switch type {
        case .f32:
            floats.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r.lowerBound * cols, count: n) }
        case .f16:
            GGMLRowProducts.halfToFloat(packed!.base + r.lowerBound * rowBytes, into: out, count: n)
        case .bf16:
            GGMLRowProducts.bfloat16ToFloat(packed!.base + r.lowerBound * rowBytes, into: out, count: n)
        default:
            GGMLDequantize.row(type, packed!.base + r.lowerBound * rowBytes, into: out, count: n)
        }
    }

    /// Every element as Float32 [rows, cols].
    public func dequantized() -> [Float] {
        if type == .f32 { return floats }
        return [Float](unsafeUninitializedCapacity: rows * cols) { buf, n in
            let per = max(1, (1 << 16) / max(cols, 1))
            let tasks = (rows + per - 1) / per
            let base = UInt(bitPattern: buf.baseAddress!)
            WorkerPool.shared.run(tasks) { t in
                let r0 = t * per, r1 = min(rows, r0 + per)
                self.dequantizeRows(r0..<r1, into: UnsafeMutablePointer<Float>(bitPattern: base)! + r0 * self.cols)
            }
            n = rows * cols
        }
    }

    /// This matrix as Float32 (`WeightPrecision.f32`).
    public func toFloat32() -> WeightMatrix {
        type == .f32 ? self : WeightMatrix(floats: dequantized(), rows: rows, cols: cols)
    }

    /// Pointer to the Float32 storage (type .f32 only), valid while `self` lives.
    func withFloats<R>(_ body: (UnsafePointer<Float>) -> R) -> R {
        floats.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

/// An owned, 64-byte-aligned byte buffer (the packed rows of a matrix).
final class PackedBytes: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let count: Int
    init(count: Int) {
        self.count = count
        base = .allocate(byteCount: max(count, 1), alignment: 64)
    }
    deinit { base.deallocate() }
}

extension ModelWeights {
    /// Bytes per storage type of the matrices (norms and biases are Float32 and counted under F32).
    public var bytesByType: [(type: GGMLType, bytes: Int)] {
        var b: [GGMLType: Int] = [:]
        for m in matrices { b[m.type, default: 0] += m.byteCount }
        b[.f32, default: 0] += vectorBytes
        return b.sorted { $0.value > $1.value }.map { ($0.key, $0.value) }
    }

    /// "Q4_1 66.4 MB, Q8_0 30.1 MB, F32 0.1 MB".
    public var storageSummary: String {
        bytesByType.map { "\($0.type.name) \(String(format: "%.1f", Double($0.bytes) / 1e6)) MB" }.joined(separator: ", ")
    }
}
