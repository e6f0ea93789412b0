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

    /// Rows per call of `linearTiles`.
    public static let tileRows = 16

    /// `linear` over rows in tiles of exactly `tileRows` (rows must be a multiple of it): every
    /// call is an sgemm of the same shape, so each row's result depends on that row alone, never on
    /// which rows share its tile or how many tiles there are (OpenBLAS picks its kernel path from
    /// the shape: sgemv, and sgemm with few rows, round differently; checked by BatchDecodeTests).
    /// Lockstep decoding of many sequences (`LlamaModel.decodeBatch`) reads each weight once per tile.
    public static func linearTiles(_ x: UnsafePointer<Float>, rows: Int, inDim: Int,
                                   weight w: UnsafePointer<Float>, outDim: Int,
                                   into y: UnsafeMutablePointer<Float>, accumulate: Bool = false) {
        precondition(rows % tileRows == 0, "linearTiles: \(rows) rows is not a multiple of \(tileRows)")
        var r = 0
        while r < rows {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(tileRows), Int32(outDim), Int32(inDim),
                        1, x + r * inDim, Int32(inDim), w, Int32(inDim), accumulate ? 1 : 0, y + r * outDim, Int32(outDim))
            r += tileRows
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
