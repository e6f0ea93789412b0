import Foundation
import KVTensor

/// Non-finite numbers (NaN, ±infinity) where a model must produce finite ones: a run stops on
/// them instead of scoring garbage (argmax of NaN logits is token 0, a KL of NaN compares as
/// "no regression").
public struct NonFiniteError: LocalizedError, Equatable, Sendable {
    /// The decoder layer after which the hidden state (residual stream) first held a non-finite
    /// value; nil when every layer's output was finite and the final norm or LM head made it.
    public var layer: Int?
    /// The sequence position of the first affected row.
    public var position: Int
    /// The offending value ("nan", "inf", "-inf").
    public var value: String

    public init(layer: Int?, position: Int, value: Float) {
        self.layer = layer; self.position = position
        self.value = value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf")
    }

    public var errorDescription: String? {
        if let layer {
            return "non-finite logits at layer \(layer)/position \(position) (\(value) in the hidden state after layer \(layer))"
        }
        return "non-finite logits at the LM head/position \(position) (\(value) after the final norm or LM head; every layer's output was finite)"
    }
}

extension ModelWeights {
    /// Every tensor with its Hugging Face name, in load order.
    public func forEachTensor(_ body: (String, [Float]) throws -> Void) rethrows {
        try body("model.embed_tokens.weight", embedding)
        for (l, w) in layers.enumerated() {
            let p = "model.layers.\(l)."
            try body(p + "input_layernorm.weight", w.inputNorm)
            try body(p + "self_attn.q_proj.weight", w.wq); try body(p + "self_attn.k_proj.weight", w.wk)
            try body(p + "self_attn.v_proj.weight", w.wv); try body(p + "self_attn.o_proj.weight", w.wo)
            if let b = w.bq { try body(p + "self_attn.q_proj.bias", b) }
            if let b = w.bk { try body(p + "self_attn.k_proj.bias", b) }
            if let b = w.bv { try body(p + "self_attn.v_proj.bias", b) }
            if let b = w.bo { try body(p + "self_attn.o_proj.bias", b) }
            try body(p + "post_attention_layernorm.weight", w.postNorm)
            try body(p + "mlp.gate_proj.weight", w.wGate); try body(p + "mlp.up_proj.weight", w.wUp)
            try body(p + "mlp.down_proj.weight", w.wDown)
            if let b = w.bGate { try body(p + "mlp.gate_proj.bias", b) }
            if let b = w.bUp { try body(p + "mlp.up_proj.bias", b) }
            if let b = w.bDown { try body(p + "mlp.down_proj.bias", b) }
        }
        try body("model.norm.weight", finalNorm)
        if let h = lmHead { try body("lm_head.weight", h) }
    }

    /// The first non-finite weight: its tensor name, flat index and value; nil when all are finite.
    /// One pass over every weight (measured in docs/robustness.md).
    public func firstNonFinite() -> (tensor: String, index: Int, value: Float)? {
        var found: (String, Int, Float)?
        forEachTensor { name, values in
            guard found == nil else { return }
            values.withUnsafeBufferPointer { b in
                if let base = b.baseAddress, let i = Ops.firstNonFinite(base, count: b.count) { found = (name, i, b[i]) }
            }
        }
        return found
    }

    /// Throws `ModelError.corruptCheckpoint` naming the file that holds the tensor (`fileOf`), the
    /// tensor and the index of the first non-finite weight. Every loader calls it after converting
    /// the weights (the GGUF loader throws its own error with `nonFiniteMessage`).
    public func checkFinite(fileOf: (String) -> String) throws {
        guard let bad = firstNonFinite() else { return }
        throw ModelError.corruptCheckpoint(file: fileOf(bad.tensor), message: Self.nonFiniteMessage(bad, name: "'\(bad.tensor)'"))
    }

    /// "tensor NAME holds a non-finite value (nan) at flat index 17; ..." for `firstNonFinite()`'s result.
    public static func nonFiniteMessage(_ bad: (tensor: String, index: Int, value: Float), name: String) -> String {
        "tensor \(name) holds a non-finite value (\(bad.value)) at flat index \(bad.index); " +
            "a model with NaN or infinite weights gives meaningless results"
    }
}
