// Loki calibration: PCA of the post-RoPE keys per layer and KV head.
// Paper: Singhania et al., "Loki: Low-rank Keys for Efficient Sparse Attention", arXiv 2406.02542.
// Reference: github.com/hpcgroup/loki (sklearn PCA per head on saved post-rotary keys: centred
// covariance, components in descending variance, means and explained-variance ratios saved).
import Foundation
import KVCacheCore
import KVHDF5
import KVTensor

/// Principal axes of the keys of every (layer, KV head), fitted offline on calibration tokens.
///
/// `bases[l, h]` is an orthonormal d x d matrix P, row-major, whose *columns* are the principal
/// directions in descending order of variance (P[i * d + j] = component i of direction j), so
/// k P are the key's coordinates along them and (k P)[:r] its rank-r projection. Like the
/// reference (sklearn PCA) the covariance is centred on the calibration mean; like the reference
/// at inference, keys are rotated without subtracting that mean (P is orthonormal, so exact
/// scores q.k = (qP).(kP) are unchanged; the mean is stored for analysis).
public struct LokiCalibration: Sendable, Equatable {
    public let layers: Int
    public let kvHeads: Int
    public let headDim: Int
    /// [L, Hkv, d, d] row-major, columns = principal directions (descending variance).
    public var bases: [Float]
    /// [L, Hkv, d] calibration mean of the keys.
    public var means: [Float]
    /// [L, Hkv, d] variance along each direction (covariance eigenvalues, n - 1 normalisation).
    public var explainedVariance: [Float]
    /// [L, Hkv, d] explained-variance ratios (each row sums to 1).
    public var explainedVarianceRatio: [Float]
    /// Keys per (layer, head) the fit saw.
    public var tokens: Int
    /// Free-form provenance (model, token source), saved as file attributes.
    public var attributes: [String: String]

    public init(layers: Int, kvHeads: Int, headDim: Int, bases: [Float], means: [Float], explainedVariance: [Float],
                explainedVarianceRatio: [Float], tokens: Int, attributes: [String: String] = [:]) {
        precondition(bases.count == layers * kvHeads * headDim * headDim, "LokiCalibration: bases must be [L, Hkv, d, d]")
        precondition(means.count == layers * kvHeads * headDim && explainedVarianceRatio.count == means.count
                     && explainedVariance.count == means.count, "LokiCalibration: means/variances must be [L, Hkv, d]")
        self.layers = layers; self.kvHeads = kvHeads; self.headDim = headDim
        self.bases = bases; self.means = means; self.explainedVariance = explainedVariance
        self.explainedVarianceRatio = explainedVarianceRatio; self.tokens = tokens; self.attributes = attributes
    }

    /// The identity basis (no rotation), equal variance ratios: what an uncalibrated Loki reads.
    public static func identity(layers: Int, kvHeads: Int, headDim d: Int) -> LokiCalibration {
        var eye = [Float](repeating: 0, count: d * d)
        for i in 0..<d { eye[i * d + i] = 1 }
        let n = layers * kvHeads
        return LokiCalibration(layers: layers, kvHeads: kvHeads, headDim: d,
                               bases: Array([[Float]](repeating: eye, count: n).joined()),
                               means: [Float](repeating: 0, count: n * d),
                               explainedVariance: [Float](repeating: 1, count: n * d),
                               explainedVarianceRatio: [Float](repeating: 1 / Float(d), count: n * d), tokens: 0)
    }

    /// The basis P [d, d] of one (layer, KV head).
    public func basis(layer: Int, head: Int) -> [Float] {
        let dd = headDim * headDim, o = (layer * kvHeads + head) * dd
        return Array(bases[o..<(o + dd)])
    }

    /// Explained-variance ratios [d] of one (layer, KV head), descending.
    public func ratios(layer: Int, head: Int) -> [Float] {
        let o = (layer * kvHeads + head) * headDim
        return Array(explainedVarianceRatio[o..<(o + headDim)])
    }

    /// The smallest r whose first r directions explain at least `threshold` of the variance.
    public func rankReaching(_ threshold: Double, layer: Int, head: Int) -> Int {
        var c = 0.0
        for (i, r) in ratios(layer: layer, head: head).enumerated() {
            c += Double(r)
            if c >= threshold - 1e-9 { return i + 1 }
        }
        return headDim
    }

    /// The reference's rank for a variance threshold t < 1 in a layer: the number of directions
    /// whose cumulative ratio stays below t, maximised over the layer's heads (at least 1).
    public func referenceRank(_ threshold: Double, layer: Int) -> Int {
        var best = 0
        for h in 0..<kvHeads {
            var c = 0.0, n = 0
            for r in ratios(layer: layer, head: h) { c += Double(r); if c < threshold { n += 1 } }
            best = max(best, n)
        }
        return min(max(best, 1), headDim)
    }

    /// Whether the calibration was fitted for this cache geometry.
    public func matches(_ shape: CacheShape) -> Bool {
        shape.layers == layers && shape.kvHeads == kvHeads && shape.headDim == headDim
    }

    // MARK: Fitting

    /// PCA of the keys an accumulator saw: eigenvectors of the centred covariance via LAPACK.
    public static func fit(_ acc: KeyCovarianceRecorder, attributes: [String: String] = [:]) throws -> LokiCalibration {
        guard let shape = acc.shape else { throw PolicyError.invalidParameter(policy: Loki.Config.descriptor.name, field: "calibration", message: "the recorder saw no model") }
        let L = shape.layers, H = shape.kvHeads, d = shape.headDim
        var bases = [Float](repeating: 0, count: L * H * d * d)
        var means = [Float](repeating: 0, count: L * H * d)
        var vars = [Float](repeating: 0, count: L * H * d)
        var ratios = [Float](repeating: 0, count: L * H * d)
        var minCount = Int.max
        for l in 0..<L {
            for h in 0..<H {
                let s = acc.stats[l][h]
                minCount = min(minCount, s.count)
                guard s.count >= 2 else {
                    throw PolicyError.invalidParameter(policy: Loki.Config.descriptor.name, field: "calibration",
                        message: "layer \(l) head \(h): \(s.count) keys, need at least 2 to fit a PCA")
                }
                let n = Double(s.count)
                // Keys were accumulated relative to a shift (the first key): the covariance is shift-free.
                var mu = [Double](repeating: 0, count: d)
                for i in 0..<d { mu[i] = s.sum[i] / n }
                var cov = [Double](repeating: 0, count: d * d)
                for i in 0..<d { for j in 0..<d { cov[i * d + j] = (s.outer[i * d + j] - n * mu[i] * mu[j]) / (n - 1) } }
                for i in 0..<d { for j in (i + 1)..<d { let a = 0.5 * (cov[i * d + j] + cov[j * d + i]); cov[i * d + j] = a; cov[j * d + i] = a } }
                let (values, vectors) = try LAPACK.symmetricEigen(cov, n: d)
                let clipped = values.map { max($0, 0) }
                let total = clipped.reduce(0, +)
                let o = (l * H + h)
                for j in 0..<d {
                    // Deterministic sign: the largest-magnitude component of each direction is positive.
                    var big = 0
                    for i in 1..<d where abs(vectors[i * d + j]) > abs(vectors[big * d + j]) { big = i }
                    let sign: Double = vectors[big * d + j] < 0 ? -1 : 1
                    for i in 0..<d { bases[o * d * d + i * d + j] = Float(sign * vectors[i * d + j]) }
                    vars[o * d + j] = Float(clipped[j])
                    ratios[o * d + j] = total > 0 ? Float(clipped[j] / total) : 1 / Float(d)
                }
                for i in 0..<d { means[o * d + i] = Float(mu[i] + Double(s.shift[i])) }
            }
        }
        return LokiCalibration(layers: L, kvHeads: H, headDim: d, bases: bases, means: means, explainedVariance: vars,
                               explainedVarianceRatio: ratios, tokens: minCount == .max ? 0 : minCount, attributes: attributes)
    }

    // MARK: Files

    static let format = "kvlab-loki-calibration"

    /// Writes the calibration (atomically) to an HDF5 file: datasets `bases` [L, Hkv, d, d],
    /// `means`, `explained_variance`, `explained_variance_ratio` [L, Hkv, d] (float32), attributes
    /// `format`, `version`, `tokens`, `basis_layout` and the provenance attributes.
    public func save(to path: String) throws {
        try H5File.writeAtomically(to: path) { f in
            let L = layers, H = kvHeads, d = headDim
            let b = try f.root.write("bases", floats: bases, shape: [L, H, d, d])
            try b.setAttribute("layout", "row-major d x d; column j = principal direction j (descending variance); stored keys = k P")
            try f.root.write("means", floats: means, shape: [L, H, d])
            try f.root.write("explained_variance", floats: explainedVariance, shape: [L, H, d])
            try f.root.write("explained_variance_ratio", floats: explainedVarianceRatio, shape: [L, H, d])
            try f.root.setAttribute("format", Self.format)
            try f.root.setAttribute("version", 1)
            try f.root.setAttribute("tokens", tokens)
            try f.root.setAttribute("key_space", "post-RoPE keys; PCA of the centred covariance (as sklearn); no mean subtraction at inference")
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try f.root.setAttribute(k, v) }
        }
    }

    /// Reads a file written by `save` (errors name the file and what is wrong).
    public static func load(_ path: String) throws -> LokiCalibration {
        func bad(_ m: String) -> PolicyError { .invalidParameter(policy: Loki.Config.descriptor.name, field: "calibration", message: "\(path): \(m)") }
        let f = try openPolicyFile(path, format: format, what: "Loki calibration file", writer: "kvlab calibrate", bad: bad)
        defer { try? f.close() }
        let root = f.root
        let (b, bs) = try root.readFloats("bases")
        guard bs.count == 4, bs[2] == bs[3] else { throw bad("bases: expected shape [L, Hkv, d, d], got \(bs)") }
        let L = bs[0], H = bs[1], d = bs[2]
        let (m, ms) = try root.readFloats("means")
        let (r, rs) = try root.readFloats("explained_variance_ratio")
        let (v, vs) = root.exists("explained_variance") ? try root.readFloats("explained_variance") : (r, rs)
        for (name, s) in [("means", ms), ("explained_variance_ratio", rs), ("explained_variance", vs)] where s != [L, H, d] {
            throw bad("\(name): expected shape \([L, H, d]), got \(s)")
        }
        var attrs: [String: String] = [:]
        for name in try root.attributeNames() where !["format", "version", "tokens", "key_space"].contains(name) {
            if let s = try? root.stringAttribute(name) { attrs[name] = s }
        }
        let tokens = root.hasAttribute("tokens") ? try root.intAttribute("tokens") : 0
        let cal = LokiCalibration(layers: L, kvHeads: H, headDim: d, bases: b, means: m, explainedVariance: v,
                                  explainedVarianceRatio: r, tokens: tokens, attributes: attrs)
        // Orthonormality is what keeps exact scores unchanged: check it once on load.
        for l in 0..<L { for h in 0..<H {
            let p = cal.basis(layer: l, head: h)
            for a in 0..<d { for c in a..<d {
                var s: Float = 0
                for i in 0..<d { s += p[i * d + a] * p[i * d + c] }
                if abs(s - (a == c ? 1 : 0)) > 1e-3 { throw bad("bases[\(l), \(h)] is not orthonormal (columns \(a), \(c): \(s))") }
            } }
        } }
        return cal
    }

    private static let files = PolicyFileCache<LokiCalibration>()

    /// `load`, remembered per path and modification date (a sweep builds the policy per sample);
    /// errors name the policy's field.
    public static func loadCached(_ path: String) throws -> LokiCalibration {
        try files.load(path, policy: Loki.Config.descriptor.name, field: "calibration", read: load)
    }
}

/// A cache policy that keeps everything and accumulates, per (layer, KV head), the count, sum
/// and sum of outer products of the post-RoPE keys appended: what `LokiCalibration.fit` needs,
/// in O(d^2) memory however many calibration tokens run.
public final class KeyCovarianceRecorder: CachePolicy {
    public struct Stats {
        public var count = 0
        var shift: [Float] = []          // first key seen: accumulation is relative to it
        var sum: [Double] = []           // [d]     sum of (k - shift)
        var outer: [Double] = []         // [d, d]  sum of (k - shift)(k - shift)^T
    }
    public private(set) var shape: CacheShape?
    public private(set) var stats: [[Stats]] = []

    public init() {}
    public var name: String { "key_covariance_recorder" }

    public func bind(shape: CacheShape) {
        if self.shape == nil || self.shape != shape {
            self.shape = shape
            stats = Array(repeating: Array(repeating: Stats(), count: shape.kvHeads), count: shape.layers)
        }
    }

    public func didAppend(_ step: LayerStep) {
        let rows = step.rows
        for (h, st) in step.stores.enumerated() {
            let d = st.headDim
            var s = stats[step.layer][h]
            let new = st.rows.withFloat32((st.count - rows)..<st.count) { keys, _ in Array(UnsafeBufferPointer(start: keys, count: rows * d)) }
            if s.count == 0 {
                s.shift = Array(new[0..<d])
                s.sum = [Double](repeating: 0, count: d)
                s.outer = [Double](repeating: 0, count: d * d)
            }
            var x = [Float](repeating: 0, count: rows * d)
            for r in 0..<rows { for i in 0..<d { x[r * d + i] = new[r * d + i] - s.shift[i] } }
            var xtx = [Float](repeating: 0, count: d * d)
            x.withUnsafeBufferPointer { xb in
                xtx.withUnsafeMutableBufferPointer { cb in
                    BLAS.gemmTN(m: d, n: d, k: rows, a: xb.baseAddress!, lda: d, b: xb.baseAddress!, ldb: d,
                                c: cb.baseAddress!, ldc: d)
                }
            }
            for i in 0..<(d * d) { s.outer[i] += Double(xtx[i]) }
            for r in 0..<rows { for i in 0..<d { s.sum[i] += Double(x[r * d + i]) } }
            s.count += rows
            stats[step.layer][h] = s
        }
    }

    /// Keys seen per (layer, head) (the minimum over them).
    public var tokensSeen: Int { stats.flatMap { $0 }.map(\.count).min() ?? 0 }
}
