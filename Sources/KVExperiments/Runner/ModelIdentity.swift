import Foundation
import KVModel

/// Model records (identity + hashes) and the text codec of a model, if it ships a tokenizer.
enum ModelIdentity {
    static func record(_ entry: ModelEntry, model: LlamaModel) throws -> ModelRecord {
        var configJSON = ""
        var weightsHash = ""
        switch entry.source {
        case .checkpoint(let path):
            let dir = URL(fileURLWithPath: path)
            configJSON = (try? String(contentsOf: dir.appendingPathComponent("config.json"), encoding: .utf8)) ?? ""
            let files = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [])
                .filter { $0.hasSuffix(".safetensors") }.sorted()
            var h = SHA256()
            for f in files { h.update(f); h.update(try SHA256.hex(file: dir.appendingPathComponent(f).path)) }
            weightsHash = h.finalize()
        case .gguf(let path):
            // The config derived from the GGUF metadata, and the file's own hash.
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            configJSON = String(data: try enc.encode(model.config), encoding: .utf8) ?? ""
            weightsHash = try SHA256.hex(file: path)
        case .synthetic(let config, let seed, let std):
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            configJSON = String(data: try enc.encode(config), encoding: .utf8) ?? ""
            weightsHash = "synthetic seed \(seed) std \(std)"
        }
        return ModelRecord(id: entry.id, source: entry.spec, configJSON: configJSON,
                           parameterCount: model.config.parameterCount,
                           kvBytesPerToken: model.config.kvBytesPerToken(elementBytes: entry.kvDType.bytes),
                           configHash: SHA256.hex(configJSON), weightsHash: weightsHash)
    }
}

/// The git commit of the working directory, or "unknown".
func currentGitCommit() -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["git", "rev-parse", "HEAD"]
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    do { try p.run() } catch { return "unknown" }
    p.waitUntilExit()
    let out = String(data: pipe.fileHandleForReading.readDataToEndOfFile(), encoding: .utf8) ?? ""
    return p.terminationStatus == 0 ? out.trimmingCharacters(in: .whitespacesAndNewlines) : "unknown"
}
