// SVD KV-head compression: the calibration (fit on real text) and its file.
// Paper: Yu et al., "Effectively Compress KV Heads for LLM", arXiv 2406.07056 (no public code found).
import Foundation
import KVCacheCore
import KVHDF5
import KVTensor

/// The fitted projection of each group of r adjacent model KV heads onto one stored head
/// (`KVHeadProjection` says how the cache applies it): values by the top-d principal directions
/// of the group's values (uncentered second moment: the reconstruction error E||v - v U U^T||^2 is
/// minimal), keys per RoPE frequency by the top complex principal direction of the group's
/// r complex coordinates (the RoPE-commuting low-rank map with least reconstruction error).
/// Also records the reconstruction errors of this fit and of mean pooling on the same data.
public struct SVDHeadsCalibration {
    public let layers: Int, modelKVHeads: Int, storedKVHeads: Int, headDim: Int
    public var ratio: Int { modelKVHeads / storedKVHeads }
    /// [L][Hs] U [r*d, d]; [L][Hs] u [d/2, r] (re, im).
    public let valueBasis: [[[Float]]], keyRe: [[[Float]]], keyIm: [[[Float]]]
    /// [L, Hs] relative reconstruction errors sum ||x - x_hat||^2 / sum ||x||^2 on the calibration
    /// tokens: this projection's and mean pooling's (each model head read back as the group mean).
    public let valueError: [Float], keyError: [Float], valueErrorMean: [Float], keyErrorMean: [Float]
    public let tokens: Int
    public var attributes: [String: String]

    public var projection: KVHeadProjection {
        KVHeadProjection(layers: layers, modelKVHeads: modelKVHeads, storedKVHeads: storedKVHeads, headDim: headDim,
                         valueBasis: valueBasis, keyRe: keyRe, keyIm: keyIm)
    }

    // MARK: Fitting

    /// Fits the projection from a recorder's second moments (LAPACK, double precision).
    public static func fit(_ rec: GroupMomentRecorder, attributes: [String: String] = [:]) throws -> SVDHeadsCalibration {
        guard let shape = rec.shape, rec.tokens > 0 else {
            throw PolicyError.invalidParameter(policy: "svd_heads", field: "calibration", message: "the recorder saw no tokens")
        }
        let L = shape.layers, hs = rec.storedKVHeads, r = shape.kvHeads / hs, d = shape.headDim, half = d / 2, n = r * d
        var vb: [[[Float]]] = [], kr: [[[Float]]] = [], ki: [[[Float]]] = []
        var ve: [Float] = [], ke: [Float] = [], vm: [Float] = [], km: [Float] = []
        for l in 0..<L {
            var vbl: [[Float]] = [], krl: [[Float]] = [], kil: [[Float]] = []
            for s in 0..<hs {
                // Values: top-d eigenvectors of the Gram matrix G [n, n].
                let g = rec.valueGram[l][s]
                let (vals, vecs) = try LAPACK.symmetricEigen(symmetrized(g, n), n: n)
                var u = [Float](repeating: 0, count: n * d)
                for c in 0..<d {
                    let sign = dominantSign(vecs, n: n, column: c)
                    for i in 0..<n { u[i * d + c] = Float(sign * vecs[i * n + c]) }
                }
                vbl.append(u)
                let trace = (0..<n).reduce(0.0) { $0 + g[$1 * n + $1] }
                let kept = vals.prefix(d).reduce(0.0) { $0 + max($1, 0) }
                ve.append(Float(trace > 0 ? max(trace - kept, 0) / trace : 0))
                vm.append(Float(trace > 0 ? meanPoolError(trace: trace, blockTraces: { a, b in
                    (0..<d).reduce(0.0) { $0 + g[(a * d + $1) * n + b * d + $1] } }, r: r) / trace : 0))
                // Keys: per frequency, the top eigenvector of the Hermitian C_j = A + iB [r, r], through
                // its real embedding [[A, -B], [B, A]] (eigenvalues doubled; vector (x; y) = x + iy).
                var ur = [Float](repeating: 0, count: half * r), ui = ur
                var kTrace = 0.0, kKept = 0.0, kMean = 0.0
                for j in 0..<half {
                    let a = rec.keyRe[l][s][j], b = rec.keyIm[l][s][j]   // [r, r] each
                    var m = [Double](repeating: 0, count: 4 * r * r)
                    for p in 0..<r { for q in 0..<r {
                        m[p * 2 * r + q] = a[p * r + q]; m[(p + r) * 2 * r + q + r] = a[p * r + q]
                        m[p * 2 * r + q + r] = -b[p * r + q]; m[(p + r) * 2 * r + q] = b[p * r + q]
                    } }
                    let (ev, evec) = try LAPACK.symmetricEigen(symmetrized(m, 2 * r), n: 2 * r)
                    var x = (0..<r).map { evec[$0 * 2 * r] }, y = (0..<r).map { evec[($0 + r) * 2 * r] }
                    // Deterministic phase: the largest component real and positive.
                    var big = 0
                    for p in 1..<r where x[p] * x[p] + y[p] * y[p] > x[big] * x[big] + y[big] * y[big] { big = p }
                    let mag = (x[big] * x[big] + y[big] * y[big]).squareRoot()
                    if mag > 0 {
                        let cr = x[big] / mag, ci = -y[big] / mag   // multiply by conj(phase)
                        for p in 0..<r { (x[p], y[p]) = (x[p] * cr - y[p] * ci, x[p] * ci + y[p] * cr) }
                    }
                    let norm = (0..<r).reduce(0.0) { $0 + x[$1] * x[$1] + y[$1] * y[$1] }.squareRoot()
                    for p in 0..<r { ur[j * r + p] = Float(x[p] / max(norm, 1e-30)); ui[j * r + p] = Float(y[p] / max(norm, 1e-30)) }
                    let t = (0..<r).reduce(0.0) { $0 + a[$1 * r + $1] }
                    kTrace += t; kKept += max(ev[0], 0)
                    kMean += meanPoolError(trace: t, blockTraces: { p, q in a[p * r + q] }, r: r)
                }
                krl.append(ur); kil.append(ui)
                ke.append(Float(kTrace > 0 ? max(kTrace - kKept, 0) / kTrace : 0))
                km.append(Float(kTrace > 0 ? kMean / kTrace : 0))
            }
            vb.append(vbl); kr.append(krl); ki.append(kil)
        }
        return SVDHeadsCalibration(layers: L, modelKVHeads: shape.kvHeads, storedKVHeads: hs, headDim: d,
                                   valueBasis: vb, keyRe: kr, keyIm: ki, valueError: ve, keyError: ke,
                                   valueErrorMean: vm, keyErrorMean: km, tokens: rec.tokens, attributes: attributes)
    }

    /// sum_m ||x_m - mean||^2 = tr(G) - (1/r) sum_{a,b} tr(G_ab), G_ab the [a, b] block.
    static func meanPoolError(trace: Double, blockTraces: (Int, Int) -> Double, r: Int) -> Double {
        var cross = 0.0
        for a in 0..<r { for b in 0..<r { cross += blockTraces(a, b) } }
        return max(trace - cross / Double(r), 0)
    }

    static func symmetrized(_ m: [Double], _ n: Int) -> [Double] {
        var s = m
        for i in 0..<n { for j in (i + 1)..<n { let a = 0.5 * (m[i * n + j] + m[j * n + i]); s[i * n + j] = a; s[j * n + i] = a } }
        return s
    }

    /// Sign making the largest-magnitude component of column `column` positive.
    static func dominantSign(_ v: [Double], n: Int, column c: Int) -> Double {
        var big = 0
        for i in 1..<n where abs(v[i * n + c]) > abs(v[big * n + c]) { big = i }
        return v[big * n + c] < 0 ? -1 : 1
    }
}

/// A cache policy that keeps everything and accumulates, per layer and group of r adjacent KV
/// heads, the second moments `SVDHeadsCalibration.fit` needs: the Gram matrix of the group's
/// concatenated values [r*d, r*d], and per RoPE frequency j the Hermitian matrix of the group's
/// complex key coordinates z_j = k_j + i k_{j+d/2} (real and imaginary parts [r, r]). Post-RoPE
/// keys give the same Hermitian matrices as pre-RoPE ones (every head of a token is rotated by the
/// same phase per frequency).
public final class GroupMomentRecorder: CachePolicy {
    public let storedKVHeads: Int
    public private(set) var shape: CacheShape?
    /// [L][Hs] [r*d * r*d]; [L][Hs][d/2] [r*r].
    public private(set) var valueGram: [[[Double]]] = []
    public private(set) var keyRe: [[[[Double]]]] = [], keyIm: [[[[Double]]]] = []
    /// Tokens seen by layer 0.
    public private(set) var tokens = 0

    public init(storedKVHeads: Int) { self.storedKVHeads = storedKVHeads }
    public var name: String { "group_moment_recorder" }

    public func bind(shape: CacheShape) {
        guard self.shape != shape else { return }
        precondition(shape.kvHeads % storedKVHeads == 0 && shape.headDim % 2 == 0, "stored KV heads must divide the model's")
        self.shape = shape
        let r = shape.kvHeads / storedKVHeads, n = r * shape.headDim
        valueGram = Array(repeating: Array(repeating: [Double](repeating: 0, count: n * n), count: storedKVHeads), count: shape.layers)
        keyRe = Array(repeating: Array(repeating: Array(repeating: [Double](repeating: 0, count: r * r), count: shape.headDim / 2),
                                       count: storedKVHeads), count: shape.layers)
        keyIm = keyRe
        tokens = 0
    }

    public func didAppend(_ step: LayerStep) {
        guard let shape else { return }
        let rows = step.rows, d = shape.headDim, half = d / 2, r = shape.kvHeads / storedKVHeads, n = r * d
        if step.layer == 0 { tokens += rows }
        for s in 0..<storedKVHeads {
            let group = (0..<r).map { step.stores[s * r + $0] }
            // Values: X [rows, n] (the group's values side by side), G += X^T X.
            var x = [Float](repeating: 0, count: rows * n)
            for row in 0..<rows { for (m, st) in group.enumerated() {
                (x.withUnsafeMutableBufferPointer { $0.baseAddress! } + row * n + m * d)
                    .update(from: st.values + (st.count - rows + row) * d, count: d)
            } }
            var xtx = [Float](repeating: 0, count: n * n)
            x.withUnsafeBufferPointer { xb in xtx.withUnsafeMutableBufferPointer { cb in
                BLAS.gemmTN(m: n, n: n, k: rows, a: xb.baseAddress!, lda: n, b: xb.baseAddress!, ldb: n, c: cb.baseAddress!, ldc: n)
            } }
            for i in 0..<(n * n) { valueGram[step.layer][s][i] += Double(xtx[i]) }
            // Keys: C_j[p, q] += z_p conj(z_q).
            for j in 0..<half {
                var re = keyRe[step.layer][s][j], im = keyIm[step.layer][s][j]
                for row in 0..<rows {
                    let z = group.map { st -> (Double, Double) in
                        let k = st.keys + (st.count - rows + row) * d
                        return (Double(k[j]), Double(k[j + half]))
                    }
                    for p in 0..<r { for q in 0..<r {
                        re[p * r + q] += z[p].0 * z[q].0 + z[p].1 * z[q].1
                        im[p * r + q] += z[p].1 * z[q].0 - z[p].0 * z[q].1
                    } }
                }
                keyRe[step.layer][s][j] = re; keyIm[step.layer][s][j] = im
            }
        }
    }
}
