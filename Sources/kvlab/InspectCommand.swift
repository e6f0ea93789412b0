import ArgumentParser
import Foundation
import KVModel

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Print a model's architecture, parameter count, KV bytes per token and tensor dtypes (GGUF: quantization types with tensor counts).")

    @Argument(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String

    func run() throws {
        let source = try ModelSource.parse(model)
        let config: ModelConfig
        var dtypes = "F32 (synthetic)"
        var extra: [(String, String)] = []
        switch source {
        case .checkpoint(let path):
            let ckpt = try Checkpoint(directory: path)
            config = ckpt.config
            dtypes = ckpt.dtypeCounts.sorted { $0.key.rawValue < $1.key.rawValue }
                .map { "\($0.key.rawValue) x \($0.value)" }.joined(separator: ", ")
        case .gguf(let path):
            let g = try GGUFCheckpoint(path: path)
            config = g.config
            dtypes = g.typeSummary
            extra = [("file", g.fileSummary)] + g.notes.map { ("note", $0) }
        case .synthetic(let c, let seed, let std):
            config = c
            dtypes += ", seed \(seed), std \(std)"
        }
        let c = config
        var rope = "theta \(c.ropeTheta)"
        switch c.ropeScaling {
        case .none: break
        case .linear(let f): rope += ", linear scaling x\(f)"
        case .llama3(let f, let lo, let hi, let orig): rope += ", llama3 scaling x\(f) (low \(lo), high \(hi), original \(orig))"
        }
        let rows: [(String, String)] = [
            ("model", model), ("model_type", c.modelType),
            ("layers", "\(c.layers)"), ("hidden", "\(c.hiddenSize)"), ("intermediate", "\(c.intermediateSize)"),
            ("heads", "\(c.heads) query, \(c.kvHeads) KV (group \(c.heads / c.kvHeads)\(c.kvHeads == 1 ? ", MQA" : c.kvHeads < c.heads ? ", GQA" : ", MHA"))"),
            ("head_dim", "\(c.headDim)"), ("vocab", "\(c.vocabSize)"), ("rope", rope),
            ("rms_norm_eps", "\(c.rmsNormEps)"), ("tied embeddings", "\(c.tieWordEmbeddings)"),
            ("biases", "qkv \(c.qkvBias), o \(c.outputBias), mlp \(c.mlpBias)"),
            ("parameters", "\(c.parameterCount) (\(String(format: "%.1f", Double(c.parameterCount) / 1e6))M)"),
            ("weights in memory", formatBytes(c.parameterCount * 4) + " (Float32)"),
            ("KV bytes/token", "\(c.kvBytesPerToken(elementBytes: 4)) (fp32 cache), \(c.kvBytesPerToken(elementBytes: 2)) (fp16)"),
            ("KV at 4K / 32K tokens", "\(formatBytes(c.kvBytesPerToken() * 4096)) / \(formatBytes(c.kvBytesPerToken() * 32768)) (fp32)"),
            ("tensor dtypes", dtypes),
        ] + extra
        let width = rows.map(\.0.count).max()!
        for (k, v) in rows { print(k.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + v) }
    }
}
