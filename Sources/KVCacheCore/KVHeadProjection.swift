// KV-head compression by low-rank projection (MHA/GQA -> fewer KV heads without uptraining).
// Paper: Yu et al., "Effectively Compress KV Heads for LLM", arXiv 2406.07056 (no public code found).
// Applied in the cache, like head pooling: the same linear maps as the paper's weight rewrite.

/// Which model KV heads a cache merges into each stored head, and how (fitted by
/// `SVDHeadsCalibration` in KVPolicies). Stored head s holds the r = Hkv / Hkv' adjacent model
/// heads s*r ..< (s+1)*r (the grouping mean pooling uses), compressed to d dims:
///
/// - values: v' = [v_{s*r}, ..., v_{s*r+r-1}] U, U [r*d, d] orthonormal columns (the top-d
///   principal directions of the group's values, uncentered). Each model head is read back as
///   v_m ~ v' U_m^T (U_m = rows m*d ..< (m+1)*d of U); attention is linear in the values, so a
///   query head of model head m attends over v' and its output a' becomes a' U_m^T: U_m^T is
///   what the paper folds into W_o.
/// - keys (RoPE-compatible): RoPE rotates the pair (x_j, x_{j+d/2}) of every head by the same angle
///   (rotate-half layout), i.e. multiplies z_j = x_j + i x_{j+d/2} by e^{i theta_j p}. A map commutes
///   with every such rotation iff it acts on each frequency j separately and complex-linearly, so
///   per frequency the group's r complex coordinates are projected on their top complex principal
///   direction u_j (unit, in C^r): z'_j = u_j^H z_j, read back as z_{m,j} ~ u_{j,m} z'_j. The score
///   of a query w of model head m is Re(conj(w_j) z_{m,j}) ~ Re(conj(conj(u_{j,m}) w_j) z'_j): the
///   query is multiplied by conj(u_{j,m}) per frequency (what the paper folds into W_q), which also
///   commutes with RoPE, so everything is applied to post-RoPE vectors.
/// With r = 1 (full rank) both maps are orthonormal and the cache reproduces the model exactly.
public final class KVHeadProjection {
    public let layers: Int, modelKVHeads: Int, storedKVHeads: Int, headDim: Int
    public var ratio: Int { modelKVHeads / storedKVHeads }
    /// [layer][stored head] U [r*d, d] row-major.
    public let valueBasis: [[[Float]]]
    /// [layer][stored head] u [d/2, r] row-major, real and imaginary parts.
    public let keyRe: [[[Float]]], keyIm: [[[Float]]]

    public init(layers: Int, modelKVHeads: Int, storedKVHeads: Int, headDim: Int,
                valueBasis: [[[Float]]], keyRe: [[[Float]]], keyIm: [[[Float]]]) {
        precondition(storedKVHeads >= 1 && modelKVHeads % storedKVHeads == 0 && headDim % 2 == 0,
                     "KV-head projection: stored heads must divide the model's, head_dim must be even")
        let r = modelKVHeads / storedKVHeads, d = headDim
        precondition(valueBasis.count == layers && keyRe.count == layers && keyIm.count == layers)
        for l in 0..<layers {
            precondition(valueBasis[l].count == storedKVHeads && valueBasis[l].allSatisfy { $0.count == r * d * d })
            precondition(keyRe[l].count == storedKVHeads && keyRe[l].allSatisfy { $0.count == d / 2 * r })
            precondition(keyIm[l].count == storedKVHeads && keyIm[l].allSatisfy { $0.count == d / 2 * r })
        }
        self.layers = layers; self.modelKVHeads = modelKVHeads; self.storedKVHeads = storedKVHeads; self.headDim = headDim
        self.valueBasis = valueBasis; self.keyRe = keyRe; self.keyIm = keyIm
    }

    /// keys [rows, Hkv*d] -> [rows, Hkv'*d]: z'_j = u_j^H z_j per stored head and frequency.
    public func projectKeys(layer l: Int, _ x: UnsafePointer<Float>, rows: Int) -> [Float] {
        let d = headDim, half = d / 2, r = ratio, hs = storedKVHeads
        var y = [Float](repeating: 0, count: rows * hs * d)
        for row in 0..<rows { for s in 0..<hs {
            let ur = keyRe[l][s], ui = keyIm[l][s], dst = (row * hs + s) * d
            for m in 0..<r {
                let src = x + (row * modelKVHeads + s * r + m) * d
                for j in 0..<half {
                    let a = ur[j * r + m], b = ui[j * r + m], zr = src[j], zi = src[j + half]
                    y[dst + j] += a * zr + b * zi           // Re(conj(u) z)
                    y[dst + j + half] += a * zi - b * zr    // Im(conj(u) z)
                }
            }
        } }
        return y
    }

    /// values [rows, Hkv*d] -> [rows, Hkv'*d]: v' = v_group U.
    public func projectValues(layer l: Int, _ x: UnsafePointer<Float>, rows: Int) -> [Float] {
        let d = headDim, r = ratio, hs = storedKVHeads
        var y = [Float](repeating: 0, count: rows * hs * d)
        for row in 0..<rows { for s in 0..<hs {
            let u = valueBasis[l][s], dst = (row * hs + s) * d
            let src = x + (row * modelKVHeads + s * r) * d        // the group's r*d contiguous values
            for i in 0..<(r * d) {
                let v = src[i]
                if v == 0 { continue }
                let ui = i * d
                for c in 0..<d { y[dst + c] += v * u[ui + c] }
            }
        } }
        return y
    }

    /// queries [rows, H*d] -> [rows, H*d]: per query head of model head m, w'_j = conj(u_{j,m}) w_j.
    public func transformQueries(layer l: Int, _ q: UnsafePointer<Float>, rows: Int, queryHeads: Int) -> [Float] {
        let d = headDim, half = d / 2, r = ratio, g = queryHeads / modelKVHeads
        var y = [Float](repeating: 0, count: rows * queryHeads * d)
        for row in 0..<rows { for qh in 0..<queryHeads {
            let h = qh / g, s = h / r, m = h % r
            let ur = keyRe[l][s], ui = keyIm[l][s], off = (row * queryHeads + qh) * d
            for j in 0..<half {
                let a = ur[j * r + m], b = ui[j * r + m], wr = q[off + j], wi = q[off + j + half]
                y[off + j] = a * wr + b * wi
                y[off + j + half] = a * wi - b * wr
            }
        } }
        return y
    }

    /// Attention output [rows, H*d] in place: per query head of model head m, a <- a' U_m^T.
    public func transformOutput(layer l: Int, _ out: UnsafeMutablePointer<Float>, rows: Int, queryHeads: Int) {
        let d = headDim, r = ratio, g = queryHeads / modelKVHeads
        var tmp = [Float](repeating: 0, count: d)
        for row in 0..<rows { for qh in 0..<queryHeads {
            let h = qh / g, s = h / r, m = h % r
            let u = valueBasis[l][s], a = out + (row * queryHeads + qh) * d
            for x in 0..<d {
                var acc: Float = 0
                let urow = (m * d + x) * d
                for c in 0..<d { acc += a[c] * u[urow + c] }
                tmp[x] = acc
            }
            for x in 0..<d { a[x] = tmp[x] }
        } }
    }
}
