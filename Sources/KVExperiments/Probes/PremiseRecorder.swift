import Foundation
import KVCacheCore
import KVTensor

/// Records, during dense prefills, what the premises of the compression families need
/// (`PremiseProbe`): each layer's keys and values (for adjacent-layer cosine similarity,
/// MiniCache's premise) and the attention of the last `window` query rows over every visible key
/// (top-fraction mass, the sparsity Quest's and oracle top-k's selection relies on).
///
/// A cache policy that keeps everything: it only looks. Work happens once per layer at the end
/// of each prefill (`retain` is called at step ends), on the layer's full, position-ordered stores.
final class PremiseRecorder: CachePolicy {
    /// Query rows whose attention is measured (the last `window` rows of each sequence).
    let window: Int
    /// Fractions of the visible keys for which the top mass is measured.
    let fractions: [Double]
    private(set) var shape: CacheShape?
    /// Per sequence, per layer: keys and values [Hkv][T * d] (position order), freed after use.
    private var keys: [[[Float]]] = [], values: [[[Float]]] = []
    /// Sums over sequences of the per-layer-pair mean cosine [L-1][Hkv], and the count of sequences.
    private(set) var cosK: [[Double]] = [], cosV: [[Double]] = []
    /// Sums over measured rows of the top-fraction mass [L][H][F], and the rows measured per layer.
    private(set) var topMass: [[[Double]]] = []
    /// The same for Quest's pages and for the page oracle at the same budgets (`PageMass`).
    private(set) var questMass: [[[Double]]] = [], pageOracleMass: [[[Double]]] = []
    /// Quest's page size for `questMass` and `pageOracleMass`.
    let pageSize: Int
    private(set) var rowsMeasured: [Int] = []
    private(set) var sequences = 0

    init(window: Int, fractions: [Double], pageSize: Int = 16) {
        precondition(window >= 1 && !fractions.isEmpty && fractions == fractions.sorted(), "window >= 1, fractions ascending")
        precondition(pageSize >= 1, "page size >= 1")
        self.window = window
        self.fractions = fractions
        self.pageSize = pageSize
    }

    var name: String { "premise_recorder" }
    var queryWindow: Int { window }

    func bind(shape: CacheShape) {
        guard self.shape != shape else { return }
        self.shape = shape
        let L = shape.layers, hkv = shape.kvHeads
        keys = Array(repeating: [], count: L); values = Array(repeating: [], count: L)
        cosK = Array(repeating: Array(repeating: 0, count: hkv), count: max(L - 1, 0)); cosV = cosK
        topMass = Array(repeating: Array(repeating: Array(repeating: 0, count: fractions.count), count: shape.queryHeads), count: L)
        questMass = topMass; pageOracleMass = topMass
        rowsMeasured = Array(repeating: 0, count: L)
    }

    /// Called per KV head at a step end; the layer's work runs once, on head 0's call.
    func retain(_ step: LayerStep, head: Int) -> [Int]? {
        guard head == 0, step.phase == .prefill, let shape else { return nil }
        let l = step.layer
        keys[l] = step.stores.map { Self.rows($0, of: \.keys) }
        values[l] = step.stores.map { Self.rows($0, of: \.values) }
        measureAttention(step, shape: shape)
        if l > 0 {
            for h in 0..<shape.kvHeads {
                cosK[l - 1][h] += Self.meanCosine(keys[l - 1][h], keys[l][h], d: shape.headDim)
                cosV[l - 1][h] += Self.meanCosine(values[l - 1][h], values[l][h], d: shape.headDim)
            }
            keys[l - 1] = []; values[l - 1] = []
        }
        if l == shape.layers - 1 { keys[l] = []; values[l] = []; sequences += 1 }
        return nil
    }

    /// A store's rows [T, d] copied in position order (a full cache's stores are in order).
    static func rows(_ s: HeadStore, of field: KeyPath<HeadStore, UnsafeMutablePointer<Float>>) -> [Float] {
        precondition(s.isOrdered && s.rows is Float32Rows, "premise probes read a full Float32 cache")
        return Array(UnsafeBufferPointer(start: s[keyPath: field], count: s.count * s.headDim))
    }

    /// Mean over tokens of cos(a_t, b_t); a, b [T, d].
    static func meanCosine(_ a: [Float], _ b: [Float], d: Int) -> Double {
        let n = min(a.count, b.count) / d
        guard n > 0 else { return 0 }
        var sum = 0.0
        for t in 0..<n {
            var ab = 0.0, aa = 0.0, bb = 0.0
            for i in 0..<d {
                let x = Double(a[t * d + i]), y = Double(b[t * d + i])
                ab += x * y; aa += x * x; bb += y * y
            }
            if aa > 0 && bb > 0 { sum += ab / (aa * bb).squareRoot() }
        }
        return sum / Double(n)
    }

    /// For each of the last `window` query rows and each query head: softmax over the keys the row
    /// sees, sorted; the mass held by the top ceil(f * visible) keys for every fraction f, and the
    /// mass of Quest's pages and of the page oracle at that token budget (`PageMass`).
    private func measureAttention(_ step: LayerStep, shape: CacheShape) {
        let d = shape.headDim, g = shape.groupSize, hq = shape.queryHeads
        let rows = step.recentCount
        guard rows > 0 else { return }
        let total = step.stores[0].count
        let scale = step.scale
        var scores = [Float](repeating: 0, count: total)
        let bounds = step.stores.map { PageMass.bounds(keys: $0.keys, count: total, d: d, pageSize: pageSize) }   // [Hkv][pages, 2d]
        var ranking: [Int] = []
        for r in 0..<rows {
            let visible = total - (rows - 1 - r)          // row r of the window sees keys 0...its own position
            guard visible > 0 else { continue }
            let budgets = fractions.map { min(visible, max(1, Int(($0 * Double(visible)).rounded(.up)))) }
            for qh in 0..<hq {
                if qh % g == 0 {                          // Quest chooses once per KV group (kv_group)
                    ranking = PageMass.questRanking(bounds: bounds[qh / g], queries: step.recentQueries + r * hq * d + qh * d,
                                                    groups: g, d: d, visible: visible, pageSize: pageSize)
                }
                let q = step.recentQueries + r * hq * d + qh * d
                let keysPtr = step.stores[qh / g].keys
                scores.withUnsafeMutableBufferPointer { s in
                    BLAS.linear(q, rows: 1, inDim: d, weight: keysPtr, outDim: visible, into: s.baseAddress!)   // q K^T
                    for j in 0..<visible { s[j] *= scale }
                    _ = Ops.softmax(s.baseAddress!, count: visible)
                    let m = PageMass.masses(probs: s.baseAddress!, visible: visible, pageSize: pageSize, questRanking: ranking, budgets: budgets)
                    for fi in fractions.indices { questMass[step.layer][qh][fi] += m.quest[fi]; pageOracleMass[step.layer][qh][fi] += m.oracle[fi] }
                }
                let sorted = scores[0..<visible].sorted(by: >)
                var prefix = 0.0, taken = 0
                for (fi, f) in fractions.enumerated() {
                    let k = min(visible, max(1, Int((f * Double(visible)).rounded(.up))))
                    while taken < k { prefix += Double(sorted[taken]); taken += 1 }
                    topMass[step.layer][qh][fi] += prefix
                }
            }
            rowsMeasured[step.layer] += 1
        }
    }
}
