import Foundation

/// Recoverable errors of model loading, each naming the file and what was wrong.
public enum ModelError: LocalizedError, Equatable {
    case fileNotFound(String)
    case unreadable(file: String, reason: String)
    case invalidConfig(file: String, field: String, message: String)
    case corruptCheckpoint(file: String, message: String)
    case missingTensor(name: String, files: [String])
    case shapeMismatch(file: String, tensor: String, expected: [Int], found: [Int])
    case unsupportedDType(file: String, tensor: String, dtype: String)

    public var errorDescription: String? {
        switch self {
        case .fileNotFound(let f): return "\(f): file not found"
        case .unreadable(let f, let r): return "\(f): cannot read: \(r)"
        case .invalidConfig(let f, let field, let m): return "\(f): field '\(field)': \(m)"
        case .corruptCheckpoint(let f, let m): return "\(f): corrupt safetensors file: \(m)"
        case .missingTensor(let n, let fs):
            return "missing tensor '\(n)' (searched \(fs.joined(separator: ", ")))"
        case .shapeMismatch(let f, let t, let e, let got):
            return "\(f): tensor '\(t)' has shape \(got) but config.json implies \(e)"
        case .unsupportedDType(let f, let t, let dt):
            return "\(f): tensor '\(t)' has dtype \(dt); supported: F32, F16, BF16"
        }
    }
}
