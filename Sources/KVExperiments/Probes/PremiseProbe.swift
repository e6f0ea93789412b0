import Foundation
import KVCacheCore
import KVHDF5
import KVModel
import KVPolicies

/// Measures, on a model and real text, the premise each compression family rests on
/// (`kvlab probe`, docs/probes.md):
/// - key rank (Loki): per layer and KV head, how many principal directions of the post-RoPE keys
///   explain 90% of their variance (the paper reports about a quarter of d for Llama-class models);
/// - adjacent-layer similarity (MiniCache): the mean per-token cosine between layer l and l+1's
///   keys, and values, per KV head (MiniCache merges layers whose states point the same way);
/// - attention sparsity (Quest, oracle top-k, H2O): the share of a query's attention mass held by
///   its top 1/64 ... 1/2 of the visible keys, per query head, over the last `window` prompt rows.
/// - Quest's page bound: at the same budgets, the mass of the pages Quest picks (top P-1 complete
///   pages by its bound, plus the last) and of the best P-1 pages by true mass plus the last
///   (`PageMass`), per query head.
/// All from dense prefills of `sequenceLength` tokens (each from position 0).
public enum PremiseProbe {
    public static let fractions: [Double] = [0.015625, 0.03125, 0.0625, 0.125, 0.25, 0.5]   // 1/64 ... 1/2

    public struct Result: Sendable {
        public var layers: Int, kvHeads: Int, queryHeads: Int, headDim: Int
        /// [L, Hkv] directions explaining 90% of the key variance.
        public var keyRank90: [Int32]
        /// [L, Hkv, d] explained-variance ratios, descending.
        public var keyVarianceRatio: [Float]
        /// [L-1, Hkv] mean per-token cosine of layer l and l+1 (keys, values).
        public var layerCosK: [Float], layerCosV: [Float]
        /// [L, H, F] mean share of attention mass in the top fraction F of visible keys.
        public var topMass: [Float]
        /// [L, H, F] mean share of attention mass on Quest's pages, and on the page oracle's, at the
        /// token budget ceil(F * visible) (pages of `pageSize`, Quest's `kv_group` choice).
        public var questMass: [Float], pageOracleMass: [Float]
        public var pageSize: Int
        public var fractions: [Double]
        public var sequences: Int, sequenceLength: Int, window: Int, tokens: Int
        public var attributes: [String: String]
    }

    public static func run(model: LlamaModel, tokens ids: [Int], sequenceLength: Int, window: Int = 64, pageSize: Int = 16,
                           attributes: [String: String] = [:], progress: (String) -> Void = { _ in }) throws -> Result {
        precondition(sequenceLength > window, "sequence length must exceed the measured window")
        let n = ids.count / sequenceLength
        guard n >= 1 else {
            throw PolicyError.invalidParameter(policy: "probe", field: "tokens",
                                               message: "need at least one sequence of \(sequenceLength) tokens, got \(ids.count) tokens")
        }
        let keysRec = KeyCovarianceRecorder()
        let premise = PremiseRecorder(window: window, fractions: fractions, pageSize: pageSize)
        let cache = model.makeCache(policy: try PolicyStack([keysRec, premise]), initialCapacity: sequenceLength)
        for s in 0..<n {
            cache.reset()
            _ = model.forward(Array(ids[s * sequenceLength..<(s + 1) * sequenceLength]), startPosition: 0, cache: cache,
                              phase: .prefill, logits: .none)
            progress("probe: sequence \(s + 1)/\(n) done")
        }
        let cal = try LokiCalibration.fit(keysRec)
        let shape = cache.shape
        let L = shape.layers, hkv = shape.kvHeads, hq = shape.queryHeads
        var ranks: [Int32] = []
        for l in 0..<L { for h in 0..<hkv { ranks.append(Int32(cal.rankReaching(0.9, layer: l, head: h))) } }
        let seqs = Double(premise.sequences)
        func mean(_ sums: [[[Double]]]) -> [Float] {
            var out: [Float] = []
            for l in 0..<L { for qh in 0..<hq { for f in fractions.indices {
                out.append(Float(sums[l][qh][f] / Double(max(premise.rowsMeasured[l], 1))))
            } } }
            return out
        }
        return Result(layers: L, kvHeads: hkv, queryHeads: hq, headDim: shape.headDim, keyRank90: ranks,
                      keyVarianceRatio: cal.explainedVarianceRatio,
                      layerCosK: premise.cosK.flatMap { $0.map { Float($0 / seqs) } },
                      layerCosV: premise.cosV.flatMap { $0.map { Float($0 / seqs) } },
                      topMass: mean(premise.topMass), questMass: mean(premise.questMass), pageOracleMass: mean(premise.pageOracleMass),
                      pageSize: pageSize, fractions: fractions, sequences: n, sequenceLength: sequenceLength, window: window,
                      tokens: n * sequenceLength, attributes: attributes)
    }
}

extension PremiseProbe.Result {
    /// Writes the probe file (atomically): datasets named as the fields, attributes for provenance.
    public func save(to path: String) throws {
        try H5File.writeAtomically(to: path) { f in
            let root = f.root
            try root.setAttribute("kind", "kvlab premise probes")
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try root.setAttribute(k, v) }
            try root.setAttribute("sequences", sequences)
            try root.setAttribute("sequence_length", sequenceLength)
            try root.setAttribute("window", window)
            try root.setAttribute("tokens", tokens)
            _ = try root.write("key_rank90", int32s: keyRank90, shape: [layers, kvHeads])
            _ = try root.write("key_variance_ratio", floats: keyVarianceRatio, shape: [layers, kvHeads, headDim])
            _ = try root.write("layer_cos_k", floats: layerCosK, shape: [max(layers - 1, 0), kvHeads])
            _ = try root.write("layer_cos_v", floats: layerCosV, shape: [max(layers - 1, 0), kvHeads])
            let top = try root.write("attention_top_mass", floats: topMass, shape: [layers, queryHeads, fractions.count])
            try top.setAttribute("fractions", fractions)
            for (name, data) in [("attention_quest_mass", questMass), ("attention_page_oracle_mass", pageOracleMass)] {
                let ds = try root.write(name, floats: data, shape: [layers, queryHeads, fractions.count])
                try ds.setAttribute("fractions", fractions)
                try ds.setAttribute("page_size", pageSize)
            }
        }
    }

    /// Summary lines: per layer, the mean key rank, the adjacent cosine and the top-1/8 mass.
    public func summary() -> [String] {
        let f8 = fractions.firstIndex(of: 0.125) ?? 0
        var out = ["layer  key_rank90(of \(headDim))  cos_k(l,l+1)  cos_v(l,l+1)  top1/8_mass  page_oracle1/8  quest1/8 (pages of \(pageSize))"]
        for l in 0..<layers {
            let rank = Double((0..<kvHeads).map { Int(keyRank90[l * kvHeads + $0]) }.reduce(0, +)) / Double(kvHeads)
            let ck = l < layers - 1 ? (0..<kvHeads).map { Double(layerCosK[l * kvHeads + $0]) }.reduce(0, +) / Double(kvHeads) : .nan
            let cv = l < layers - 1 ? (0..<kvHeads).map { Double(layerCosV[l * kvHeads + $0]) }.reduce(0, +) / Double(kvHeads) : .nan
            func headMean(_ x: [Float]) -> Double { (0..<queryHeads).map { Double(x[(l * queryHeads + $0) * fractions.count + f8]) }.reduce(0, +) / Double(queryHeads) }
            out.append(String(format: "%5d  %10.1f  %12.3f  %12.3f  %11.3f  %14.3f  %8.3f", l, rank, ck, cv,
                              headMean(topMass), headMean(pageOracleMass), headMean(questMass)))
        }
        return out
    }
}
