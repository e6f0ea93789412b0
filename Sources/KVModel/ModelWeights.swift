import Foundation
import KVTensor

/// Weights of one decoder layer: matrices in HF `Linear` layout [out, in], in their file's
/// precision (`WeightMatrix`); norms and biases Float32.
public struct LayerWeights: Sendable {
    public var inputNorm: [Float]        // [D]
    public var wq: WeightMatrix          // [H*d, D]
    public var wk: WeightMatrix          // [Hkv*d, D]
    public var wv: WeightMatrix          // [Hkv*d, D]
    public var wo: WeightMatrix          // [D, H*d]
    public var bq: [Float]?              // [H*d]
    public var bk: [Float]?              // [Hkv*d]
    public var bv: [Float]?              // [Hkv*d]
    public var bo: [Float]?              // [D]
    public var postNorm: [Float]         // [D]
    public var wGate: WeightMatrix       // [I, D]
    public var wUp: WeightMatrix         // [I, D]
    public var wDown: WeightMatrix       // [D, I]
    public var bGate: [Float]?           // [I]
    public var bUp: [Float]?             // [I]
    public var bDown: [Float]?           // [D]
}

/// All weights of a decoder. Matrices stay in the checkpoint's precision (F16/BF16 as 16-bit,
/// GGUF blocks packed; `WeightPrecision.f32` dequantizes them at load); norms and biases are Float32.
public struct ModelWeights: Sendable {
    public var embedding: WeightMatrix   // [V, D]
    public var layers: [LayerWeights]    // [L]
    public var finalNorm: [Float]        // [D]
    public var lmHead: WeightMatrix?     // [V, D]; nil when tied to the embedding

    /// Every matrix, embedding first.
    public var matrices: [WeightMatrix] {
        [embedding] + layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.wGate, $0.wUp, $0.wDown] } + (lmHead.map { [$0] } ?? [])
    }

    /// Bytes of the Float32 vectors (norms, biases).
    public var vectorBytes: Int {
        var n = finalNorm.count
        for l in layers {
            n += l.inputNorm.count + l.postNorm.count
            for b in [l.bq, l.bk, l.bv, l.bo, l.bGate, l.bUp, l.bDown] { n += b?.count ?? 0 }
        }
        return n * MemoryLayout<Float>.stride
    }

    /// Bytes held by the weights as stored in memory (packed matrices at their packed size).
    public var byteCount: Int { matrices.reduce(vectorBytes) { $0 + $1.byteCount } }

    /// The same weights with every matrix dequantized to Float32.
    public func toFloat32() -> ModelWeights {
        defer { WeightArena.shared.seal() }
        var w = self
        w.embedding = embedding.toFloat32()
        w.lmHead = lmHead?.toFloat32()
        for i in w.layers.indices {
            let l = layers[i]
            w.layers[i].wq = l.wq.toFloat32(); w.layers[i].wk = l.wk.toFloat32(); w.layers[i].wv = l.wv.toFloat32()
            w.layers[i].wo = l.wo.toFloat32(); w.layers[i].wGate = l.wGate.toFloat32()
            w.layers[i].wUp = l.wUp.toFloat32(); w.layers[i].wDown = l.wDown.toFloat32()
        }
        return w
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

    /// Builds the weights from a name -> Float32 lookup (a generator, or a checkpoint read as Float32).
    static func assemble(_ c: ModelConfig, _ get: (String) throws -> [Float]) throws -> ModelWeights {
        let shapes = Dictionary(uniqueKeysWithValues: expectedTensors(c).map { ($0.name, $0.shape) })
        return try assemble(c, matrix: { name in
            let s = shapes[name]!
            return WeightMatrix(floats: try get(name), rows: s[0], cols: s[1])
        }, vector: get)
    }

    /// Builds the weights from lookups of the matrices (2-D tensors, in their stored precision) and
    /// of the Float32 vectors (norms, biases), by HF name.
    static func assemble(_ c: ModelConfig, matrix: (String) throws -> WeightMatrix,
                         vector get: (String) throws -> [Float]) throws -> ModelWeights {
        func layer(_ l: Int) throws -> LayerWeights {
            let p = "model.layers.\(l)."
            func opt(_ name: String, _ on: Bool) throws -> [Float]? { on ? try get(p + name) : nil }
            return LayerWeights(
                inputNorm: try get(p + "input_layernorm.weight"),
                wq: try matrix(p + "self_attn.q_proj.weight"), wk: try matrix(p + "self_attn.k_proj.weight"),
                wv: try matrix(p + "self_attn.v_proj.weight"), wo: try matrix(p + "self_attn.o_proj.weight"),
                bq: try opt("self_attn.q_proj.bias", c.qkvBias), bk: try opt("self_attn.k_proj.bias", c.qkvBias),
                bv: try opt("self_attn.v_proj.bias", c.qkvBias), bo: try opt("self_attn.o_proj.bias", c.outputBias),
                postNorm: try get(p + "post_attention_layernorm.weight"),
                wGate: try matrix(p + "mlp.gate_proj.weight"), wUp: try matrix(p + "mlp.up_proj.weight"),
                wDown: try matrix(p + "mlp.down_proj.weight"),
                bGate: try opt("mlp.gate_proj.bias", c.mlpBias), bUp: try opt("mlp.up_proj.bias", c.mlpBias),
                bDown: try opt("mlp.down_proj.bias", c.mlpBias))
        }
        defer { WeightArena.shared.seal() }      // the next model starts a chunk of its own
        return ModelWeights(embedding: try matrix("model.embed_tokens.weight"),
                            layers: try (0..<c.layers).map(layer),
                            finalNorm: try get("model.norm.weight"),
                            lmHead: c.tieWordEmbeddings ? nil : try matrix("lm_head.weight"))
    }
}
