import Foundation
import KVTensor

/// Where a model comes from: a Hugging Face checkpoint folder, a GGUF file or a seeded synthetic shape.
///
/// Command-line syntax: a folder path, a `.gguf` file (or any regular file that starts with the
/// GGUF magic), or `synthetic:PRESET[,key=value...]`, e.g.
/// `synthetic:smollm2-135m,seed=7` or `synthetic:tiny,layers=4,kv_heads=1`.
public enum ModelSource: Equatable, Sendable {
    case checkpoint(path: String)
    case gguf(path: String)
    case synthetic(config: ModelConfig, seed: UInt64, std: Float)

    /// Named synthetic shapes. SmolLM2-135M's shape is the decoder benchmark's reference.
    public static let presets: [String: [String: Double]] = [
        "tiny": ["layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "intermediate": 128, "vocab": 256],
        "small": ["layers": 4, "hidden": 256, "heads": 8, "kv_heads": 2, "intermediate": 768, "vocab": 4096],
        "smollm2-135m": ["layers": 30, "hidden": 576, "heads": 9, "kv_heads": 3, "intermediate": 1536,
                         "vocab": 49152, "tied": 1, "rope_theta": 100000],
        "llama2-7b": ["layers": 32, "hidden": 4096, "heads": 32, "kv_heads": 32, "intermediate": 11008, "vocab": 32000],
    ]
    static let keys = ["layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab", "tied",
                       "rope_theta", "qkv_bias", "seed", "std", "max_positions"]

    public static func parse(_ text: String) throws -> ModelSource {
        guard text.hasPrefix("synthetic:") else { return isGGUF(text) ? .gguf(path: text) : .checkpoint(path: text) }
        let parts = text.dropFirst("synthetic:".count).split(separator: ",").map(String.init)
        guard let presetName = parts.first, let preset = presets[presetName] else {
            throw ModelError.invalidConfig(file: text, field: "preset",
                message: "expected one of \(presets.keys.sorted().joined(separator: ", ")) after 'synthetic:'")
        }
        var v = preset
        v["seed"] = v["seed"] ?? 0
        for kv in parts.dropFirst() {
            let pair = kv.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, keys.contains(pair[0]), let num = Double(pair[1]) else {
                throw ModelError.invalidConfig(file: text, field: pair.first ?? kv,
                    message: "expected key=number with key one of \(keys.joined(separator: ", "))")
            }
            // Shapes and the seed become integers: a fractional, non-finite or absurd value is an
            // error here, not a trap converting it (found by the YAML fuzzer: layers=2666...6).
            let real = ["rope_theta", "std"].contains(pair[0])
            let limit = pair[0] == "seed" ? 9.007_199_254_740_992e15 : 1e9   // 2^53 for seeds
            guard num.isFinite, real ? num > 0 : (num == num.rounded() && num >= 0 && num <= limit) else {
                throw ModelError.invalidConfig(file: text, field: pair[0],
                    message: real ? "expected a positive finite number, got \(pair[1])"
                                  : "expected a whole number from 0 to \(Int(limit)), got \(pair[1])")
            }
            v[pair[0]] = num
        }
        let config = try ModelConfig(
            modelType: "llama", hiddenSize: Int(v["hidden"]!), intermediateSize: Int(v["intermediate"]!),
            layers: Int(v["layers"]!), heads: Int(v["heads"]!), kvHeads: Int(v["kv_heads"]!),
            headDim: v["head_dim"].map { Int($0) }, vocabSize: Int(v["vocab"]!),
            maxPositions: Int(v["max_positions"] ?? 131072), ropeTheta: v["rope_theta"] ?? 10000,
            tieWordEmbeddings: (v["tied"] ?? 0) != 0, qkvBias: (v["qkv_bias"] ?? 0) != 0)
        return .synthetic(config: config, seed: UInt64(v["seed"]!), std: Float(v["std"] ?? 0.02))
    }

    /// A path ending in .gguf that is not a folder, or a regular file whose first four bytes are "GGUF".
    /// The file or folder a loaded model comes from (nil for synthetic models): where its tokenizer lives.
    public var path: String? {
        switch self {
        case .checkpoint(let p), .gguf(let p): return p
        case .synthetic: return nil
        }
    }

    public static func isGGUF(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
        if exists && isDir.boolValue { return false }
        if path.lowercased().hasSuffix(".gguf") { return true }
        guard exists, let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// Builds the model (reads the checkpoint, or draws the weights). `weights`: matrices in their
    /// file's precision (.stored: F16/BF16 16-bit, GGUF blocks packed) or dequantized to Float32
    /// (.f32); synthetic weights are Float32 either way.
    public func load(weights precision: WeightPrecision = .stored) throws -> LlamaModel {
        switch self {
        case .checkpoint(let path): return try LlamaModel(checkpoint: path, weights: precision)
        case .gguf(let path): return try LlamaModel(gguf: path, weights: precision)
        case .synthetic(let config, let seed, let std):
            return LlamaModel(config: config, weights: .synthetic(config, seed: seed, std: std))
        }
    }
}
