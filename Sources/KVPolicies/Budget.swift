// Support file, not a policy. Budget conventions follow the references: token counts (H2O, SnapKV),
// and kvpress's compression_ratio (reference: NVIDIA/kvpress, utils compute_n_kept).
import Foundation
import KVCache

/// How many tokens a policy may keep: an absolute count, or kvpress's `compression_ratio`
/// (the fraction removed: kept = int(T * (1 - ratio)), T the prompt length).
public enum Budget: Hashable, Sendable, CustomStringConvertible {
    case tokens(Int)
    case ratio(Double)

    /// Tokens kept out of `length`.
    public func capacity(for length: Int) -> Int {
        switch self {
        case .tokens(let n): return n
        case .ratio(let r): return max(1, Int(Double(length) * (1 - r)))   // kvpress compute_n_kept
        }
    }

    public var description: String {
        switch self { case .tokens(let n): return "\(n)"; case .ratio(let r): return "r\(r)" }
    }

    /// Rejects budgets no policy can honour; `policy` and `field` name the parameter in the error.
    public func validate(policy: String, field: String = "budget") throws {
        switch self {
        case .tokens(let n) where n <= 0:
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a positive token count, got \(n)")
        case .ratio(let r) where !(r >= 0 && r < 1):
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a compression ratio in [0, 1), got \(r)")
        default: break
        }
    }
}

/// When an eviction policy enforces its budget.
public enum EvictionSchedule: String, Sendable, CaseIterable {
    /// Once, at the end of the (compressed) prefill: kvpress's presses, SnapKV, PyramidKV.
    case prefill
    /// At the end of prefill and after every decode step, so the budget holds as generation grows.
    case always
}

/// A policy parameter that cannot be honoured, named by policy and field.
public enum PolicyError: LocalizedError, Equatable {
    case invalidParameter(policy: String, field: String, message: String)
    case unknownPolicy(String, known: [String])

    public var errorDescription: String? {
        switch self {
        case .invalidParameter(let p, let f, let m): return "policy '\(p)', field '\(f)': \(m)"
        case .unknownPolicy(let n, let known): return "unknown policy '\(n)'; known: \(known.joined(separator: ", "))"
        }
    }
}
