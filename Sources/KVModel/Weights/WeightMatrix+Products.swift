import KVGGUF
import KVTensor

/// One product of a batched matrix-vector call: y [matrix.rows] (=|+=) W x.
public struct MatVec {
    public let matrix: WeightMatrix
    public let y: UnsafeMutablePointer<Float>      // [matrix.rows]
    public let accumulate: Bool
    public init(_ matrix: WeightMatrix, _ y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        self.matrix = matrix
        self.y = y
        self.accumulate = accumulate
    }
}

extension WeightMatrix {
    /// Weight bytes per parallel task of a matrix-vector product (contiguous rows, so each thread
    /// streams whole pages and the hardware prefetcher follows).
    static let taskBytes = 32 << 10
    /// Largest dequantized tile of a prefill product, in floats (4 MiB): big enough that sgemm's
    /// packing of the activations is amortised, small enough to stay in the last-level cache.
    public static let tileCapacity = 1 << 20
    /// Fewer activation rows than this run the matrix-vector kernels row by row instead of
    /// dequantizing tiles (which costs about as much as four matrix-vector products).
    public static let tileMinRows = 4

    /// Floats of the tile buffer `apply` needs for this matrix (0 for Float32 matrices).
    public var tileFloats: Int { type == .f32 ? 0 : min(rows, max(1, Self.tileCapacity / cols)) * cols }

    /// y [T, rows] (=|+=) x [T, cols] W^T, the HF `Linear` without bias. Float32 matrices go to
    /// OpenBLAS (sgemv for one row, sgemm for more); T < tileMinRows take the matrix-vector kernels; packed ones are
    /// dequantized tile by tile into `tile` (at least `tileFloats` floats) and multiplied with sgemm.
    public func apply(_ x: UnsafePointer<Float>, rows T: Int, into y: UnsafeMutablePointer<Float>,
                      accumulate: Bool = false, tile: UnsafeMutablePointer<Float>?) {
        if type == .f32 {
            withFloats { BLAS.linear(x, rows: T, inDim: cols, weight: $0, outDim: rows, into: y, accumulate: accumulate) }
            return
        }
        if T < Self.tileMinRows {
            for r in 0..<T { Self.products([MatVec(self, y + r * rows, accumulate: accumulate)], x: x + r * cols) }
            return
        }
        guard let tile else { preconditionFailure("WeightMatrix.apply: a \(type.name) matrix needs a tile buffer for \(T) rows") }
        let tileRows = min(rows, max(1, Self.tileCapacity / cols))
        var r0 = 0
        while r0 < rows {
            let n = min(tileRows, rows - r0)
            dequantizeParallel(r0..<(r0 + n), into: tile)
            BLAS.gemmNT(m: T, n: n, k: cols, a: x, lda: cols, b: tile, ldb: cols,
                        beta: accumulate ? 1 : 0, c: y + r0, ldc: rows)
            r0 += n
        }
    }

    /// Dequantizes rows `r` into out [r.count, cols] across the worker pool; the workers sleep after
    /// (BLAS, with threads of its own, runs next).
    func dequantizeParallel(_ r: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        let per = max(1, (16 << 10) / cols)
        let tasks = (r.count + per - 1) / per
        let base = UInt(bitPattern: out)
        WorkerPool.shared.run(tasks, park: true) { t in
            let a = r.lowerBound + t * per, b = min(r.upperBound, a + per)
            self.dequantizeRows(a..<b, into: UnsafeMutablePointer<Float>(bitPattern: base)! + (a - r.lowerBound) * self.cols)
        }
    }

    /// Matrix-vector products of several matrices with one x [cols] (e.g. q, k and v projections),
    /// as one parallel loop: each matrix's rows are cut into tasks of about `taskBytes`, and the
    /// tasks of all of them are shared by `WorkerPool.shared`'s threads.
    ///
    /// Float32 matrices take OpenBLAS's sgemv instead (as every version before packed weights did),
    /// so a Float32 model's logits stay bit-identical to those versions' (experiments/regression.yaml
    /// against results/baselines/ with `kvlab compare --exact`).
    public static func products(_ jobs: [MatVec], x: UnsafePointer<Float>) {
        for job in jobs where job.matrix.type == .f32 {
            job.matrix.withFloats {
                BLAS.linear(x, rows: 1, inDim: job.matrix.cols, weight: $0, outDim: job.matrix.rows, into: job.y, accumulate: job.accumulate)
            }
        }
        let jobs = jobs.filter { $0.matrix.type != .f32 }
        guard let first = jobs.first else { return }
        let cols = first.matrix.cols
        precondition(jobs.allSatisfy { $0.matrix.cols == cols }, "WeightMatrix.products: matrices of different widths")
        let threads = WorkerPool.shared.threads
        var taskRows: [Int] = [], firstTask: [Int] = [0]
        for j in jobs {
            let m = j.matrix
            var per = max(1, taskBytes / max(m.rowBytes, 1))
            per = min(per, max(1, (m.rows + 4 * threads - 1) / (4 * threads)))
            taskRows.append(per)
            firstTask.append(firstTask.last! + (m.rows + per - 1) / per)
        }
        let sums = jobs.contains { GGMLRowProducts.needsBlockSums($0.matrix.type) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: max(1, cols / 32)) { auxBuf in
            let aux = auxBuf.baseAddress!
            if sums { GGMLRowProducts.blockSums(x, cols: cols, into: aux) }
            WorkerPool.shared.run(firstTask.last!) { t in
                var j = 0
                while firstTask[j + 1] <= t { j += 1 }
                let job = jobs[j], per = taskRows[j]
                let r0 = (t - firstTask[j]) * per
                job.matrix.rowProducts(r0..<min(job.matrix.rows, r0 + per), x: x, aux: aux, y: job.y, accumulate: job.accumulate)
            }
        }
    }

    /// y [n, rows] (=|+=) x [n, cols] W^T for n independent vectors (lockstep decoding of n
    /// sequences, `LlamaModel.decodeBatch`), each row of y exactly as `products` computes it for
    /// that vector alone: Float32 matrices take `BLAS.linearShared` (row-blocked sgemv), the others
    /// the same per-row kernels, with each task's block of weight rows (about `taskBytes`) passed
    /// by every vector while it is in cache, so the weights stream from memory once per step.
    public static func productsShared(_ m: WeightMatrix, x: UnsafePointer<Float>, vectors n: Int,
                                      into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        if m.type == .f32 {
            m.withFloats { BLAS.linearShared(x, rows: n, inDim: m.cols, weight: $0, outDim: m.rows, into: y, accumulate: accumulate) }
            return
        }
        guard n > 0 else { return }
        let cols = m.cols, auxCount = max(1, cols / 32)
        var per = max(1, taskBytes / max(m.rowBytes, 1))
        per = min(per, max(1, (m.rows + 4 * WorkerPool.shared.threads - 1) / (4 * WorkerPool.shared.threads)))
        let tasks = (m.rows + per - 1) / per
        let aux = UnsafeMutablePointer<Float>.allocate(capacity: auxCount * n)    // [n, cols / 32]
        defer { aux.deallocate() }
        if GGMLRowProducts.needsBlockSums(m.type) {
            for i in 0..<n { GGMLRowProducts.blockSums(x + i * cols, cols: cols, into: aux + i * auxCount) }
        }
        WorkerPool.shared.run(tasks) { t in
            let r0 = t * per, range = r0..<min(m.rows, r0 + per)
            for i in 0..<n {
                m.rowProducts(range, x: x + i * cols, aux: aux + i * auxCount, y: y + i * m.rows, accumulate: accumulate)
            }
        }
    }

    /// y[r] (=|+=) W[r, :] . x for the rows of `range`, with the kernel of this matrix's type.
    func rowProducts(_ range: Range<Int>, x: UnsafePointer<Float>, aux: UnsafePointer<Float>,
                     y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        withExtendedLifetime(storage) {
            GGMLRowProducts.rows(type, storage.base, rowBytes: rowBytes, range: range, x: x, aux: aux,
                                 cols: cols, y: y, accumulate: accumulate)
        }
    }
}
