import Foundation
import KVTensor

/// Architecture of a Llama-family decoder (Llama 2/3/3.1, Mistral, Qwen2, SmolLM).
/// Built either from a Hugging Face `config.json` or from a synthetic-model section.
public struct ModelConfig: Equatable, Sendable, Codable {
    public var modelType: String            // "llama" | "mistral" | "qwen2"
    public var hiddenSize: Int              // D
    public var intermediateSize: Int        // I
    public var layers: Int                  // L
    public var heads: Int                   // H
    public var kvHeads: Int                 // Hkv
    public var headDim: Int                 // d
    public var vocabSize: Int               // V
    public var maxPositions: Int
    public var ropeTheta: Double
    public var ropeScaling: RoPEScaling
    public var rmsNormEps: Float
    public var tieWordEmbeddings: Bool
    public var qkvBias: Bool                // bias on q/k/v projections (Qwen2; Llama attention_bias)
    public var outputBias: Bool             // bias on o_proj (Llama attention_bias)
    public var mlpBias: Bool                // bias on gate/up/down (Llama mlp_bias)
    public var bosTokenId: Int?
    public var eosTokenIds: [Int]

    public static let supportedTypes = ["llama", "mistral", "qwen2"]

    public init(modelType: String = "llama", hiddenSize: Int, intermediateSize: Int, layers: Int, heads: Int,
                kvHeads: Int, headDim: Int? = nil, vocabSize: Int, maxPositions: Int = 32768,
                ropeTheta: Double = 10000, ropeScaling: RoPEScaling = .none, rmsNormEps: Float = 1e-5,
                tieWordEmbeddings: Bool = false, qkvBias: Bool = false, outputBias: Bool = false,
                mlpBias: Bool = false, bosTokenId: Int? = nil, eosTokenIds: [Int] = [],
                source: String = "model config") throws {
        self.modelType = modelType; self.hiddenSize = hiddenSize; self.intermediateSize = intermediateSize
        self.layers = layers; self.heads = heads; self.kvHeads = kvHeads
        self.headDim = headDim ?? (heads > 0 ? hiddenSize / heads : 0)
        self.vocabSize = vocabSize; self.maxPositions = maxPositions; self.ropeTheta = ropeTheta
        self.ropeScaling = ropeScaling; self.rmsNormEps = rmsNormEps; self.tieWordEmbeddings = tieWordEmbeddings
        self.qkvBias = qkvBias; self.outputBias = outputBias; self.mlpBias = mlpBias
        self.bosTokenId = bosTokenId; self.eosTokenIds = eosTokenIds
        try validate(source: source)
    }

    /// Checks the invariants the decoder relies on; `source` names the file or section in errors.
    public func validate(source: String) throws {
        func bad(_ field: String, _ expected: String, _ got: Any) -> ModelError {
            .invalidConfig(file: source, field: field, message: "expected \(expected), got \(got)")
        }
        guard Self.supportedTypes.contains(modelType) else {
            throw ModelError.invalidConfig(file: source, field: "model_type",
                message: "unsupported model_type '\(modelType)'; supported: \(Self.supportedTypes.joined(separator: ", "))")
        }
        let limits: [(String, Int, Int)] = [("hidden_size", hiddenSize, 1 << 16), ("intermediate_size", intermediateSize, 1 << 18),
                                            ("num_hidden_layers", layers, 1024), ("num_attention_heads", heads, 1024),
                                            ("num_key_value_heads", kvHeads, 1024), ("head_dim", headDim, 4096),
                                            ("vocab_size", vocabSize, 1 << 22)]
        for (name, v, maxV) in limits where v < 1 || v > maxV { throw bad(name, "an integer in 1...\(maxV)", v) }
        if heads % kvHeads != 0 { throw bad("num_key_value_heads", "a divisor of num_attention_heads (\(heads))", kvHeads) }
        if headDim % 2 != 0 { throw bad("head_dim", "an even number (RoPE rotates pairs)", headDim) }
        if !(ropeTheta > 0 && ropeTheta.isFinite) { throw bad("rope_theta", "a positive number", ropeTheta) }
        if !(rmsNormEps > 0 && rmsNormEps.isFinite) { throw bad("rms_norm_eps", "a positive number", rmsNormEps) }
        if maxPositions < 1 || maxPositions > 1 << 30 { throw bad("max_position_embeddings", "an integer in 1...\(1 << 30)", maxPositions) }
        if let b = bosTokenId, b < 0 || b >= vocabSize {
            throw bad("bos_token_id", "a token id below vocab_size (\(vocabSize))", b)
        }
        if let e = eosTokenIds.first(where: { $0 < 0 || $0 >= vocabSize }) {
            throw bad("eos_token_id", "token ids below vocab_size (\(vocabSize))", e)
        }
        switch ropeScaling {
        case .none: break
        case .linear(let f):
            if !(f > 0 && f.isFinite) { throw bad("rope_scaling.factor", "a positive number", f) }
        case let .llama3(f, low, high, original):
            if !(f > 0 && f.isFinite) { throw bad("rope_scaling.factor", "a positive number", f) }
            if !(low > 0 && low.isFinite) { throw bad("rope_scaling.low_freq_factor", "a positive number", low) }
            // The smoothing ramp divides by high - low: equal factors would make every frequency NaN.
            if !(high > low && high.isFinite) { throw bad("rope_scaling.high_freq_factor", "a number above low_freq_factor (\(low))", high) }
            if original < 1 { throw bad("rope_scaling.original_max_position_embeddings", "a positive integer", original) }
        }
    }

    /// Parameters of the decoder (the tied embedding counted once).
    public var parameterCount: Int {
        let d = headDim, D = hiddenSize
        var perLayer = D * heads * d + 2 * D * kvHeads * d + heads * d * D + 3 * D * intermediateSize + 2 * D
        if qkvBias { perLayer += heads * d + 2 * kvHeads * d }
        if outputBias { perLayer += D }
        if mlpBias { perLayer += 2 * intermediateSize + D }
        return layers * perLayer + vocabSize * D * (tieWordEmbeddings ? 1 : 2) + D
    }

    /// KV cache bytes per token for a given element size (all layers, K and V).
    public func kvBytesPerToken(elementBytes: Int = 4) -> Int { layers * kvHeads * headDim * 2 * elementBytes }

    public var rotary: RotaryEmbedding { RotaryEmbedding(headDim: headDim, theta: ropeTheta, scaling: ropeScaling) }
}
