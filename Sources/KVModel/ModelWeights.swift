import Foundation
import KVTensor

/// Weights of one decoder layer, Float32, HF `Linear` layout [out, in].
public struct LayerWeights: Sendable {
    public var inputNorm: [Float]        // [D]
    public var wq: [Float]               // [H*d, D]
    public var wk: [Float]               // [Hkv*d, D]
    public var wv: [Float]               // [Hkv*d, D]
    public var wo: [Float]               // [D, H*d]
    public var bq: [Float]?              // [H*d]
    public var bk: [Float]?              // [Hkv*d]
    public var bv: [Float]?              // [Hkv*d]
    public var bo: [Float]?              // [D]
    public var postNorm: [Float]         // [D]
    public var wGate: [Float]            // [I, D]
    public var wUp: [Float]              // [I, D]
    public var wDown: [Float]            // [D, I]
    public var bGate: [Float]?           // [I]
    public var bUp: [Float]?             // [I]
    public var bDown: [Float]?           // [D]
}

/// All weights of a decoder. Kept in Float32 whatever the checkpoint's precision
/// (F16/BF16 are converted on load): BLAS sgemm/sgemv run on them directly.
public struct ModelWeights: Sendable {
    public var embedding: [Float]        // [V, D]
    public var layers: [LayerWeights]    // [L]
    public var finalNorm: [Float]        // [D]
    public var lmHead: [Float]?          // [V, D]; nil when tied to the embedding

    /// Bytes held by the weight arrays.
    public var byteCount: Int {
        var n = embedding.count + finalNorm.count + (lmHead?.count ?? 0)
        for l in layers {
            n += l.inputNorm.count + l.wq.count + l.wk.count + l.wv.count + l.wo.count + l.postNorm.count
            n += l.wGate.count + l.wUp.count + l.wDown.count
            for b in [l.bq, l.bk, l.bv, l.bo, l.bGate, l.bUp, l.bDown] { n += b?.count ?? 0 }
        }
        return n * MemoryLayout<Float>.stride
    }

    /// Expected HF tensor names and shapes for a config, in load order.
    public static func expectedTensors(_ c: ModelConfig) -> [(name: String, shape: [Int])] {
        let D = c.hiddenSize, I = c.intermediateSize, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim
        var out: [(String, [Int])] = [("model.embed_tokens.weight", [c.vocabSize, D])]
        for l in 0..<c.layers {
            let p = "model.layers.\(l)."
            out += [(p + "input_layernorm.weight", [D]),
                    (p + "self_attn.q_proj.weight", [q, D]), (p + "self_attn.k_proj.weight", [kv, D]),
                    (p + "self_attn.v_proj.weight", [kv, D]), (p + "self_attn.o_proj.weight", [D, q]),
                    (p + "post_attention_layernorm.weight", [D]),
                    (p + "mlp.gate_proj.weight", [I, D]), (p + "mlp.up_proj.weight", [I, D]), (p + "mlp.down_proj.weight", [D, I])]
            if c.qkvBias {
                out += [(p + "self_attn.q_proj.bias", [q]), (p + "self_attn.k_proj.bias", [kv]), (p + "self_attn.v_proj.bias", [kv])]
            }
            if c.outputBias { out.append((p + "self_attn.o_proj.bias", [D])) }
            if c.mlpBias {
                out += [(p + "mlp.gate_proj.bias", [I]), (p + "mlp.up_proj.bias", [I]), (p + "mlp.down_proj.bias", [D])]
            }
        }
        out.append(("model.norm.weight", [D]))
        if !c.tieWordEmbeddings { out.append(("lm_head.weight", [c.vocabSize, D])) }
        return out
    }

    /// Builds the weights from a name -> Float32 lookup (checkpoint or generator).
    static func assemble(_ c: ModelConfig, _ get: (String) throws -> [Float]) throws -> ModelWeights {
        func layer(_ l: Int) throws -> LayerWeights {
            let p = "model.layers.\(l)."
            func opt(_ name: String, _ on: Bool) throws -> [Float]? { on ? try get(p + name) : nil }
            return LayerWeights(
                inputNorm: try get(p + "input_layernorm.weight"),
                wq: try get(p + "self_attn.q_proj.weight"), wk: try get(p + "self_attn.k_proj.weight"),
                wv: try get(p + "self_attn.v_proj.weight"), wo: try get(p + "self_attn.o_proj.weight"),
                bq: try opt("self_attn.q_proj.bias", c.qkvBias), bk: try opt("self_attn.k_proj.bias", c.qkvBias),
                bv: try opt("self_attn.v_proj.bias", c.qkvBias), bo: try opt("self_attn.o_proj.bias", c.outputBias),
                postNorm: try get(p + "post_attention_layernorm.weight"),
                wGate: try get(p + "mlp.gate_proj.weight"), wUp: try get(p + "mlp.up_proj.weight"),
                wDown: try get(p + "mlp.down_proj.weight"),
                bGate: try opt("mlp.gate_proj.bias", c.mlpBias), bUp: try opt("mlp.up_proj.bias", c.mlpBias),
                bDown: try opt("mlp.down_proj.bias", c.mlpBias))
        }
        return ModelWeights(embedding: try get("model.embed_tokens.weight"),
                            layers: try (0..<c.layers).map(layer),
                            finalNorm: try get("model.norm.weight"),
                            lmHead: c.tieWordEmbeddings ? nil : try get("lm_head.weight"))
    }
}
