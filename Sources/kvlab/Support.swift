import ArgumentParser
import Foundation
import KVCacheCore
import KVExperiments
import KVModel
import KVTensor

enum ModelSourceHelp {
    static var presets: String { ModelSource.presets.keys.sorted().joined(separator: ", ") }
    static let argumentHelp = "A checkpoint folder, a .gguf file, or synthetic:PRESET[,key=value...] (keys: layers, hidden, heads, kv_heads, head_dim, intermediate, vocab, tied, rope_theta, qkv_bias, seed, std)."
}

/// Writes a line to standard error (progress and figures that are not the command's output).
func note(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

/// Parses "1,2,3" into token ids.
func parseIds(_ text: String, field: String) throws -> [Int] {
    let parts = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let ids = parts.compactMap { Int($0) }
    guard !parts.isEmpty, ids.count == parts.count, ids.allSatisfy({ $0 >= 0 }) else {
        throw ValidationError("\(field): expected comma-separated non-negative integers, got '\(text)'")
    }
    return ids
}

/// Loads a model, turning loader errors into one clear line. `weights`: matrices in their file's
/// precision (default) or dequantized to Float32 at load.
func loadModel(_ spec: String, threads: Int?, weights: WeightPrecision = .stored) throws -> LlamaModel {
    if let threads { BLAS.setThreads(threads) }
    return try ModelSource.parse(spec).load(weights: weights)
}

extension KVDType: ExpressibleByArgument {}

extension WeightPrecision: ExpressibleByArgument {
    static let help = "Matrices as the file stores them (stored: F16/BF16 16-bit, GGUF blocks packed) or f32 (dequantized at load)."
}

/// Human-readable byte counts.
func formatBytes(_ n: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var v = Double(n), i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : String(format: "%.2f %@", v, units[i])
}
