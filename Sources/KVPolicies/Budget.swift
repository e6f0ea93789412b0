// Support file, not a policy. Budget conventions follow the references: token counts (H2O, SnapKV),
// and kvpress's compression_ratio (reference: NVIDIA/kvpress, utils compute_n_kept).
import Foundation
import KVCacheCore

/// How many tokens a policy may keep: an absolute count, kvpress's `compression_ratio` (the
/// fraction removed: kept = int(T * (1 - ratio)), T the prompt length), or the fraction kept
/// (`keep: v`, the same as compression_ratio 1 - v, kept as the user wrote it so that labels and
/// results echo it).
public enum Budget: Hashable, Sendable, CustomStringConvertible {
    case tokens(Int)
    case ratio(Double)
    case keep(Double)

    /// Tokens kept out of `length`.
    public func capacity(for length: Int) -> Int {
        switch self {
        case .tokens(let n): return n
        case .ratio(let r): return max(1, Int(Double(length) * (1 - r)))   // kvpress compute_n_kept
        case .keep(let v): return Budget.ratio(1 - v).capacity(for: length)  // kvpress's convention, r = 1 - v
        }
    }

    /// The fraction removed (kvpress's compression_ratio) of a fractional budget; nil for a token count.
    public var compressionRatio: Double? {
        switch self { case .tokens: return nil; case .ratio(let r): return r; case .keep(let v): return 1 - v }
    }

    /// How the user wrote it: the config key and its value (`keep`, 0.125).
    public var userForm: (key: String, value: Double) {
        switch self {
        case .tokens(let n): return ("budget", Double(n))
        case .ratio(let r): return ("compression_ratio", r)
        case .keep(let v): return ("keep", v)
        }
    }

    public var description: String {
        switch self { case .tokens(let n): return "\(n)"; case .ratio(let r): return "r\(r)"; case .keep(let v): return "k\(v)" }
    }

    /// Rejects budgets no policy can honour; `policy` and `field` name the parameter in the error.
    public func validate(policy: String, field: String = "budget") throws {
        switch self {
        case .tokens(let n) where n <= 0:
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a positive token count, got \(n)")
        case .ratio(let r) where !(r >= 0 && r < 1):
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a compression ratio in [0, 1), got \(r)")
        case .keep(let v) where !(v > 0 && v <= 1):
            throw PolicyError.invalidParameter(policy: policy, field: field, message: "expected a fraction kept in (0, 1], got \(v)")
        default: break
        }
    }
}

/// When an eviction policy enforces its budget, and against what during decoding
/// (docs/kvpress-semantics.md, "Decode-time eviction"). The budget always applies to the
/// compressed context (resolved against its length at the end of the compressed prefill).
public struct EvictionSchedule: Hashable, Sendable, CustomStringConvertible {
    /// Whether decode-time eviction runs.
    public enum Phases: String, Sendable, CaseIterable {
        /// Once, at the end of the (compressed) prefill: kvpress's presses, SnapKV, PyramidKV.
        case prefill
        /// At the end of prefill and after every decode step, so the cache stops growing.
        case always
    }
    public var phases: Phases
    /// The size decode-time eviction holds the cache at (only with `always`).
    public var decodeBudget: DecodeBudget

    public init(_ phases: Phases, decodeBudget: DecodeBudget = .prompt) {
        self.phases = phases
        self.decodeBudget = phases == .always ? decodeBudget : .prompt
    }

    public static let prefill = EvictionSchedule(.prefill)
    public static let always = EvictionSchedule(.always)

    /// The `schedule` value in configs and labels.
    public var rawValue: String { phases.rawValue }
    public var description: String { phases == .always && decodeBudget != .prompt ? "always/\(decodeBudget.rawValue)" : rawValue }
}

/// What decode-time eviction (`schedule: always`) holds the cache at.
public enum DecodeBudget: String, Sendable, CaseIterable {
    /// The size the prompt left it at: the compressed context's budget plus the tokens prefilled
    /// after it without compression (a task's question). The question never evicts context; each
    /// token fed through the decode path (a generated token, or a question fed token by token)
    /// displaces one. kvpress's DecodingPress with target_size = n_kept + question, interval 1.
    case prompt
    /// The compressed context's budget alone: tokens prefilled without compression are evicted
    /// (down to the budget) at the first decode step (KVLab before this option existed).
    case context
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
