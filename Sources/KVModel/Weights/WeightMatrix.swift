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
/// is `cols / blockSize` blocks; rows are contiguous), in huge-page memory (`WeightArena`).
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
    /// rows * rowBytes bytes, 64-byte aligned (shared by copies; written only through the
    /// copy-on-write subscript).
    private(set) var storage: PackedBytes

    /// Bytes of one row.
    public var rowBytes: Int { cols / type.blockSize * type.blockBytes }
    /// Bytes held.
    public var byteCount: Int { rows * rowBytes }
    public var elementCount: Int { rows * cols }

    /// A Float32 matrix (the values are copied).
    public init(floats: [Float], rows: Int, cols: Int) {
        precondition(floats.count == rows * cols, "WeightMatrix: \(floats.count) values are not \(rows) x \(cols)")
        self = floats.withUnsafeBytes { WeightMatrix(type: .f32, rows: rows, cols: cols, copying: $0.baseAddress!) }
    }

    /// A matrix of `type` whose rows*rowBytes bytes are copied from `src` (any alignment); with
    /// `rowOrder`, row i is copied from source row rowOrder[i] (a permutation of 0..<rows).
    public init(type: GGMLType, rows: Int, cols: Int, copying src: UnsafeRawPointer, rowOrder: [Int]? = nil) {
        precondition(type.isSupported, "WeightMatrix: \(type.name) cannot be decoded")
        precondition(cols % type.blockSize == 0, "WeightMatrix: \(cols) columns are not whole \(type.name) blocks")
        self.rows = rows
        self.cols = cols
        self.type = type
        let rb = cols / type.blockSize * type.blockBytes
        storage = PackedBytes(count: rows * rb)
        if let order = rowOrder {
            precondition(order.count == rows && Set(order).count == rows && order.allSatisfy { $0 >= 0 && $0 < rows },
                         "WeightMatrix: the row order is not a permutation of \(rows) rows")
            for (i, r) in order.enumerated() { (storage.base + i * rb).copyMemory(from: src + r * rb, byteCount: rb) }
        } else {
            storage.base.copyMemory(from: src, byteCount: rows * rb)
        }
    }

    /// Element i (row-major, i = row * cols + col) of a Float32 matrix. Setting it first copies
    /// storage that other values share (copy on write), as an array would: for editing weights in
    /// tests and weight transforms (a packed matrix must be dequantized first: `toFloat32`).
    public subscript(i: Int) -> Float {
        get {
            precondition(type == .f32 && i >= 0 && i < rows * cols, "WeightMatrix[\(i)]: element of a \(type.name) \(rows) x \(cols) matrix")
            return withExtendedLifetime(storage) { storage.base.load(fromByteOffset: i * 4, as: Float.self) }
        }
        set {
            precondition(type == .f32 && i >= 0 && i < rows * cols, "WeightMatrix[\(i)]: element of a \(type.name) \(rows) x \(cols) matrix")
            if !isKnownUniquelyReferenced(&storage) {
                let copy = PackedBytes(count: storage.count)
                copy.base.copyMemory(from: storage.base, byteCount: storage.count)
                storage = copy
            }
            storage.base.storeBytes(of: newValue, toByteOffset: i * 4, as: Float.self)
        }
    }

    /// The same matrix with its rows reordered: row i of the result is row `order[i]` of this one.
    public func reorderingRows(_ order: [Int]) -> WeightMatrix {
        withExtendedLifetime(storage) { WeightMatrix(type: type, rows: rows, cols: cols, copying: storage.base, rowOrder: order) }
    }

    /// Decodes rows r.lowerBound..<r.upperBound into out [r.count, cols] (Float32), as the file's
    /// reference dequantization does (ggml's `dequantize_row_*`, hardware half conversion).
    public func dequantizeRows(_ r: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        precondition(r.lowerBound >= 0 && r.upperBound <= rows, "dequantizeRows: \(r) outside 0..<\(rows)")
        let n = r.count * cols
        let src = UnsafeRawPointer(storage.base + r.lowerBound * rowBytes)
        switch type {
        case .f32: UnsafeMutableRawPointer(out).copyMemory(from: src, byteCount: n * 4)
        case .f16: GGMLRowProducts.halfToFloat(src, into: out, count: n)
        case .bf16: GGMLRowProducts.bfloat16ToFloat(src, into: out, count: n)
        default: GGMLDequantize.row(type, src, into: out, count: n)
        }
    }

    /// Every element as Float32 [rows, cols].
    public func dequantized() -> [Float] {
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

    /// The Float32 storage (type .f32 only), valid while `self` lives.
    func withFloats<R>(_ body: (UnsafePointer<Float>) -> R) -> R {
        precondition(type == .f32, "withFloats: a \(type.name) matrix")
        return withExtendedLifetime(storage) { body(storage.base.assumingMemoryBound(to: Float.self)) }
    }
}

/// The bytes of one matrix: 64-byte aligned, in a `WeightArena` chunk this keeps alive.
final class PackedBytes: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let count: Int
    private let owner: WeightArena.Chunk
    init(count: Int) {
        self.count = count
        (owner, base) = WeightArena.shared.allocate(count)
    }
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

extension WeightMatrix {
    /// The first non-finite element as the matrix decodes (flat index row * cols + col, value), or
    /// nil. Float32 storage is scanned in place; other types are dequantized into a transient buffer
    /// of about 64K floats per task (across `WorkerPool.shared`), never kept.
    public func firstNonFinite() -> (index: Int, value: Float)? {
        if type == .f32 {
            return withFloats { p in Ops.firstNonFinite(p, count: rows * cols).map { ($0, p[$0]) } }
        }
        let per = max(1, (1 << 16) / max(cols, 1))
        let tasks = (rows + per - 1) / per
        let found = UnsafeMutablePointer<(Int, Float)?>.allocate(capacity: tasks)
        found.initialize(repeating: nil, count: tasks)
        defer { found.deinitialize(count: tasks); found.deallocate() }
        let slots = UInt(bitPattern: found)
        WorkerPool.shared.run(tasks) { t in
            let r0 = t * per, r1 = min(rows, r0 + per), n = (r1 - r0) * cols
            let buf = UnsafeMutablePointer<Float>.allocate(capacity: n)      // [r1 - r0, cols]
            defer { buf.deallocate() }
            self.dequantizeRows(r0..<r1, into: buf)
            if let i = Ops.firstNonFinite(buf, count: n) {
                UnsafeMutablePointer<(Int, Float)?>(bitPattern: slots)![t] = (r0 * self.cols + i, buf[i])
            }
        }
        return UnsafeBufferPointer(start: found, count: tasks).lazy.compactMap { $0 }.first
    }
}
