import CBLAS

/// Thin wrappers over OpenBLAS. Every matrix is row-major and contiguous.
/// The only file in KVLab that calls BLAS directly.
public enum BLAS {
    /// Number of threads OpenBLAS uses for its own kernels.
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// y[rows, out] = x[rows, inDim] * w[out, inDim]^T (+ y if accumulate). The HF `Linear` layout.
    @inline(__always)
    public static func linear(_ x: UnsafePointer<Float>, rows: Int, inDim: Int,
                              weight w: UnsafePointer<Float>, outDim: Int,
                              into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        if rows == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(outDim), Int32(inDim), 1, w, Int32(inDim),
                        x, 1, accumulate ? 1 : 0, y, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(outDim), Int32(inDim),
                        1, x, Int32(inDim), w, Int32(inDim), accumulate ? 1 : 0, y, Int32(outDim))
        }
    }

    /// `linear` of `rows` independent vectors (rows of x) through one weight matrix, one vector at a
    /// time as `linear(rows: 1)` computes it (sgemv), but in blocks of weight rows small enough to
    /// stay in L1 while every vector passes: the weights stream from memory once for all vectors
    /// instead of once per vector. Row-blocked sgemv gives exactly the bits of the whole-matrix sgemv
    /// (each output row is one dot product; checked for these shapes and 1 or 2 threads by
    /// BatchDecodeTests), so each vector's result equals `linear(x_r, rows: 1, ...)`.
    /// Lockstep decoding of many sequences (`LlamaModel.decodeBatch`) runs on it.
    public static func linearShared(_ x: UnsafePointer<Float>, rows: Int, inDim: Int,
                                    weight w: UnsafePointer<Float>, outDim: Int,
                                    into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        let block = max(8, 32_768 / max(inDim * MemoryLayout<Float>.stride, 1) / 8 * 8)   // weight rows per block (~32 KB)
        var o = 0
        while o < outDim {
            let m = min(block, outDim - o)
            for r in 0..<rows {
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(m), Int32(inDim), 1, w + o * inDim, Int32(inDim),
                            x + r * inDim, 1, accumulate ? 1 : 0, y + r * outDim + o, 1)
            }
            o += m
        }
    }

    /// c[m, n] = alpha * a[m, k] * b[n, k]^T + beta * c, with explicit leading dimensions.
    @inline(__always)
    public static func gemmNT(m: Int, n: Int, k: Int, alpha: Float = 1,
                              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                              beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// c[m, n] = alpha * a[m, k] * b[k, n] + beta * c, with explicit leading dimensions.
    @inline(__always)
    public static func gemmNN(m: Int, n: Int, k: Int, alpha: Float = 1,
                              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                              beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// c[m, n] = alpha * a[k, m]^T * b[k, n] + beta * c (used for covariance: X^T X).
    public static func gemmTN(m: Int, n: Int, k: Int, alpha: Float = 1,
                              a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                              beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

/// Symmetric eigendecomposition through LAPACK (dsyev, in double precision for stability).
public enum LAPACK {
    public struct Failure: Error, CustomStringConvertible {
        public let info: Int
        public var description: String { "LAPACK dsyev failed (info = \(info))" }
    }

    /// Eigen-decomposition of a symmetric n x n matrix (row-major).
    /// Returns eigenvalues in *descending* order and the matching eigenvectors as the
    /// columns of a row-major n x n matrix: vectors[i * n + j] is component i of vector j.
    public static func symmetricEigen(_ matrix: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
        precondition(matrix.count == n * n, "symmetricEigen: matrix is not n x n")
        var a = matrix  // column-major == row-major for a symmetric matrix
        var w = [Double](repeating: 0, count: n)
        var nn = Int32(n), lda = Int32(n), info: Int32 = 0, lwork: Int32 = -1
        var jobz = Int8(UInt8(ascii: "V")), uplo = Int8(UInt8(ascii: "U"))
        var query = 0.0
        dsyev_(&jobz, &uplo, &nn, &a, &lda, &w, &query, &lwork, &info)
        lwork = Int32(query)
        var work = [Double](repeating: 0, count: Int(lwork))
        dsyev_(&jobz, &uplo, &nn, &a, &lda, &w, &work, &lwork, &info)
        if info != 0 { throw Failure(info: Int(info)) }
        // a is column-major: eigenvector j is a[j*n ..< (j+1)*n], ascending eigenvalues.
        var values = [Double](repeating: 0, count: n)
        var vectors = [Double](repeating: 0, count: n * n)
        for jj in 0..<n {
            let src = n - 1 - jj
            values[jj] = w[src]
            for i in 0..<n { vectors[i * n + jj] = a[src * n + i] }
        }
        return (values, vectors)
    }
}
