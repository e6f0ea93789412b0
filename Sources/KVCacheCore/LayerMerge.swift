import Foundation

/// The MiniCache merge of one layer pair and KV head (arXiv 2405.14366, Sec. 4): tokens both
/// layers hold as Float32 rows and that have not been considered before are paired by position;
/// per token the key and value directions of the lower (l-1) and upper (l) layer are merged by
/// SLERP, e = [sin((1-t)W) u_{l-1} + sin(tW) u_l] / sin(W) (W = the angle between them), each
/// layer keeps its own norms, and the most divergent tokens stay unmerged in both layers.
///
/// Divergence of a token: the larger of its key and value angular distances W / pi. The first
/// batch that is merged (normally the prompt) keeps its top `retainFraction` (rounded up) and fixes
/// the threshold (the smallest kept divergence) that later tokens (decoding) are compared with.
/// retainFraction 1 keeps everything unmerged (the full cache, exactly); 0 merges everything.
final class PairMergeState {
    var consideredThrough = -1          // highest position already considered
    var threshold: Double?              // divergence at or above which a token stays unmerged
    func reset() { consideredThrough = -1; threshold = nil }
}

enum LayerMerge {
    /// Merges `lower` and `upper` (one KV head of the pair) per `spec`. Returns the index maps
    /// (new -> old) of both stores, or nil if nothing moved. With `compress` false (a task's
    /// question) the new tokens are marked considered and stay exact.
    static func merge(lower a: HeadStore, upper b: HeadStore, state: PairMergeState, spec: LayerMergeSpec,
                      compress: Bool) -> (lower: [Int], upper: [Int])? {
        guard let ma = a.mergedRows, let mb = b.mergedRows, ma.merged.shared === mb.merged.shared else { return nil }
        let shared = ma.merged.shared
        let from = state.consideredThrough
        var upperIndex: [Int: Int] = [:]
        var newest = from
        for i in mb.merged.count..<b.count where b.position(i) > from { upperIndex[b.position(i)] = i; newest = max(newest, b.position(i)) }
        var pairs: [(Int, Int)] = []
        for i in ma.merged.count..<a.count where a.position(i) > from {
            newest = max(newest, a.position(i))
            if let j = upperIndex[a.position(i)] { pairs.append((i, j)) }
        }
        state.consideredThrough = newest
        guard compress, !pairs.isEmpty else { return nil }

        let d = a.headDim, t = Double(spec.t)
        var ka = [Float](repeating: 0, count: d), kb = ka, va = ka, vb = ka
        var merged: [(lower: Int, upper: Int, key: [Float], value: [Float], norms: (Float, Float, Float, Float))] = []
        var divergence: [Double] = []
        for (i, j) in pairs {
            a.key(i, into: &ka); b.key(j, into: &kb); a.value(i, into: &va); b.value(j, into: &vb)
            let k = slerp(ka, kb, t: t), v = slerp(va, vb, t: t)
            divergence.append(max(k.angle, v.angle) / .pi)
            merged.append((i, j, k.direction, v.direction, (k.norms.0, k.norms.1, v.norms.0, v.norms.1)))
        }
        let keep = retained(divergence, state: state, fraction: spec.retainFraction)
        let chosen = merged.indices.filter { !keep[$0] }
        guard !chosen.isEmpty else { return nil }
        var rows: [Int32] = []
        for c in chosen { rows.append(merged[c].key.withUnsafeBufferPointer { kp in
            merged[c].value.withUnsafeBufferPointer { shared.append(key: kp.baseAddress!, value: $0.baseAddress!) } }) }
        // Pairs are in increasing lower index; the upper indices need sorting (both stores keep order).
        let lowerMap = a.absorbMerged(chosen.map { merged[$0].lower }, rows: rows,
                                      keyNorms: chosen.map { merged[$0].norms.0 }, valueNorms: chosen.map { merged[$0].norms.2 })
        let upperOrder = chosen.indices.sorted { merged[chosen[$0]].upper < merged[chosen[$1]].upper }
        let upperMap = b.absorbMerged(upperOrder.map { merged[chosen[$0]].upper }, rows: upperOrder.map { rows[$0] },
                                      keyNorms: upperOrder.map { merged[chosen[$0]].norms.1 },
                                      valueNorms: upperOrder.map { merged[chosen[$0]].norms.3 })
        return (lowerMap, upperMap)
    }

    /// Which candidates stay unmerged (see the type's comment).
    static func retained(_ div: [Double], state: PairMergeState, fraction: Double) -> [Bool] {
        if fraction >= 1 { return div.map { _ in true } }
        if fraction <= 0 { return div.map { _ in false } }
        if let th = state.threshold { return div.map { $0 >= th } }
        let r = Int((fraction * Double(div.count)).rounded(.up))
        let order = div.indices.sorted { div[$0] != div[$1] ? div[$0] > div[$1] : $0 < $1 }
        var keep = [Bool](repeating: false, count: div.count)
        for i in order.prefix(r) { keep[i] = true }
        state.threshold = order.prefix(r).last.map { div[$0] } ?? .infinity
        return keep
    }

    /// SLERP of the directions of x (lower layer) and y (upper layer) at t, in Double.
    /// Returns the unit merged direction (0 if both are 0), the angle W in [0, pi] and both norms.
    static func slerp(_ x: [Float], _ y: [Float], t: Double) -> (direction: [Float], angle: Double, norms: (Float, Float)) {
        let nx = x.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let ny = y.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let norms = (Float(nx), Float(ny))
        if nx == 0 && ny == 0 { return (x.map { _ in 0 }, 0, norms) }
        if nx == 0 { return (y.map { Float(Double($0) / ny) }, 0, norms) }
        if ny == 0 { return (x.map { Float(Double($0) / nx) }, 0, norms) }
        var dot = 0.0
        for c in x.indices { dot += Double(x[c]) * Double(y[c]) }
        let w = acos(min(max(dot / (nx * ny), -1), 1)), s = sin(w)
        var e = [Double](repeating: 0, count: x.count)
        if s < 1e-6 {   // (anti)parallel: normalised linear interpolation of the unit vectors
            for c in x.indices { e[c] = (1 - t) * Double(x[c]) / nx + t * Double(y[c]) / ny }
            let n = e.reduce(0) { $0 + $1 * $1 }.squareRoot()
            if n < 1e-12 { return (x.map { Float(Double($0) / nx) }, w, norms) }
            return (e.map { Float($0 / n) }, w, norms)
        }
        let cx = sin((1 - t) * w) / (s * nx), cy = sin(t * w) / (s * ny)
        for c in x.indices { e[c] = cx * Double(x[c]) + cy * Double(y[c]) }
        return (e.map { Float($0) }, w, norms)
    }
}
