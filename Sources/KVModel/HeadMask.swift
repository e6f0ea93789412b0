// Head ablation: the causal test of "Retrieval Head Mechanistically Explains Long-Context Factuality"
// (Wu et al., arXiv 2404.15574). Reference: nightdessert/Retrieval_Head, needle_in_haystack_with_mask.py
// with faiss_attn/source/modeling_llama.py (`block_list`).
import Foundation
import KVCacheCore

/// A set of query heads whose attention is switched off inside the decoder. Not a cache policy:
/// the cache and its policy never know; the model applies it around `KVCache.attention`.
///
/// The reference masks a head by zeroing its query (`query_states[:, h] = 0` in the flash-attention
/// path; `attn_weights[:, h] = 0` before the softmax in the eager path): both make the head's
/// attention uniform over the keys it sees, so its output is the mean of the visible values. That is
/// `.uniform`, the default. `.zero` instead zeroes the head's attention output (what "removing the
/// head" means in most pruning work): the head contributes nothing to the output projection.
/// The reference passes the mask only on decode steps (its prompt, but the last token, is prefilled
/// without it): `.decode`, the default; `.all` masks prefill rows too.
public struct HeadMask: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable, Codable { case uniform, zero }
    public enum Phases: String, Sendable, CaseIterable, Codable { case decode, all }

    /// Masked query heads per layer: heads[layer] is sorted, each in 0..<H.
    public let heads: [[Int]]
    public let mode: Mode
    public let phases: Phases

    /// `pairs`: (layer, query head). Throws on a head outside the model's shape.
    public init(pairs: [(layer: Int, head: Int)], layers: Int, queryHeads: Int, mode: Mode = .uniform,
                phases: Phases = .decode) throws {
        var h = Array(repeating: Set<Int>(), count: layers)
        for p in pairs {
            guard p.layer >= 0 && p.layer < layers && p.head >= 0 && p.head < queryHeads else {
                throw ModelError.invalidConfig(file: "head mask", field: "heads",
                    message: "head \(p.layer).\(p.head) is outside the model (\(layers) layers x \(queryHeads) query heads)")
            }
            h[p.layer].insert(p.head)
        }
        heads = h.map { $0.sorted() }
        self.mode = mode
        self.phases = phases
    }

    /// Number of masked heads.
    public var count: Int { heads.reduce(0) { $0 + $1.count } }
    /// The masked (layer, head) pairs in layer-major order.
    public var pairs: [(layer: Int, head: Int)] { heads.enumerated().flatMap { l, hs in hs.map { (l, $0) } } }

    /// Heads of `layer` masked in `phase` (empty when the mask does not apply).
    func heads(layer: Int, phase: Phase) -> [Int] {
        guard phases == .all || phase == .decode, layer < heads.count else { return [] }
        return heads[layer]
    }

    /// Zeroes columns [h*d, (h+1)*d) of every row of x [rows, H*d] for each masked head h.
    static func zero(_ x: UnsafeMutablePointer<Float>, rows: Int, width: Int, heads: [Int], headDim d: Int) {
        for r in 0..<rows { for h in heads { (x + r * width + h * d).update(repeating: 0, count: d) } }
    }
}

extension LlamaModel {
    /// Applies a head mask (the model's, or a run's own) to one layer's queries (before attention)
    /// or attention output (after), as its mode says. q and attn are [rows, H*d].
    func applyHeadMask(_ mask: HeadMask?, layer: Int, phase: Phase, rows: Int, queries q: UnsafeMutablePointer<Float>? = nil,
                       output attn: UnsafeMutablePointer<Float>? = nil) {
        guard let mask else { return }
        let heads = mask.heads(layer: layer, phase: phase)
        guard !heads.isEmpty else { return }
        let width = config.heads * config.headDim
        switch mask.mode {
        case .uniform: if let q { HeadMask.zero(q, rows: rows, width: width, heads: heads, headDim: config.headDim) }
        case .zero: if let attn { HeadMask.zero(attn, rows: rows, width: width, heads: heads, headDim: config.headDim) }
        }
    }
}
