// Support file, not a policy: typed parameters of the policy descriptors (keys, defaults, bounds,
// help) and how they are read from a config entry and written into labels (the policies' papers and
// reference repositories are on their own files).
import KVCacheCore

/// One given value of a policy entry (a YAML scalar of a config or of `--policy`): typed reads whose
/// errors point at the value.
public protocol ParameterValue {
    func intValue() throws -> Int
    func doubleValue() throws -> Double
    func boolValue() throws -> Bool
    func stringValue() throws -> String
    /// An error located at this value.
    func fail(_ message: String) -> Error
}

/// The given values of one policy entry, by key, and the entry itself for errors that name no key.
public struct ParameterInputs {
    public var values: [String: ParameterValue]
    let entryError: (String) -> Error
    public init(_ values: [String: ParameterValue], entryError: @escaping (String) -> Error) {
        self.values = values; self.entryError = entryError
    }
    public subscript(_ key: String) -> ParameterValue? { values[key] }
    /// An error about the entry as a whole (a missing key, two keys that exclude each other).
    public func error(_ message: String) -> Error { entryError(message) }

    /// The value of `key` as one of `T`'s cases (its raw values listed in the error).
    public func choice<T: RawRepresentable & CaseIterable>(_ key: String, _ type: T.Type) throws -> T? where T.RawValue == String {
        guard let v = values[key] else { return nil }
        let s = try v.stringValue()
        guard let c = T(rawValue: s) else {
            throw v.fail("expected one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
        }
        return c
    }
}

/// A bound on a parameter's value; a value outside is rejected with "expected <expected>, got v".
public struct Bound<T>: Sendable {
    let test: @Sendable (T) -> Bool
    public let expected: String
    public init(_ expected: String, _ test: @escaping @Sendable (T) -> Bool) { self.expected = expected; self.test = test }

    /// Throws "policy 'P', field 'key': expected <expected>, got v" for a value outside.
    public func check(_ key: String, _ value: T, policy: String) throws {
        if !test(value) { throw PolicyError.invalidParameter(policy: policy, field: key, message: "expected \(expected), got \(value)") }
    }
}

extension Bound where T: Comparable & Sendable {
    public static func atLeast(_ m: T) -> Bound { Bound(">= \(m)") { $0 >= m } }
    /// In [0, 1], described as `what` ("a value in [0, 1]").
    public static func unit(_ what: String) -> Bound where T == Double { Bound(what) { $0 >= 0 && $0 <= 1 } }
}

/// One parameter of a policy: the config keys it reads, its type and help for the docs, how it is
/// read into the typed config, written into labels, and checked.
public struct PolicyParameter<Config>: Sendable {
    public let keys: [String]
    public let type: String
    public let help: String
    public let required: Bool
    /// The default as the docs show it when writing the default config is not it (e.g. "L/2").
    public let defaultText: String?
    /// The policy's budget (`budget_kind` / `budget_value` of its runs, the x axis of plots).
    public let isBudget: Bool
    /// Read after the others: its default depends on another parameter.
    let late: Bool
    let read: @Sendable (inout Config, ParameterInputs) throws -> Void
    let write: @Sendable (Config, _ canonical: Bool) -> [(String, String)]
    let check: @Sendable (Config, _ policy: String) throws -> Void

    public init(keys: [String], type: String, help: String, required: Bool = false, defaultText: String? = nil,
                isBudget: Bool = false, late: Bool = false,
                read: @escaping @Sendable (inout Config, ParameterInputs) throws -> Void,
                write: @escaping @Sendable (Config, _ canonical: Bool) -> [(String, String)],
                check: @escaping @Sendable (Config, _ policy: String) throws -> Void = { _, _ in }) {
        self.keys = keys; self.type = type; self.help = help; self.required = required; self.defaultText = defaultText
        self.isBudget = isBudget; self.late = late; self.read = read; self.write = write; self.check = check
    }
}

/// A parameter value written into labels: Swift's own rendering (`64`, `0.5`, `true`).
func text<T>(_ v: T) -> String { "\(v)" }

extension PolicyParameter {
    /// An integer; `required` ones have no default.
    public static func int(_ key: String, _ kp: WritableKeyPath<Config, Int>, _ bound: Bound<Int>? = nil,
                           required: Bool = false, isBudget: Bool = false, help: String) -> Self {
        Self(keys: [key], type: "integer", help: help, required: required, isBudget: isBudget,
             read: { c, p in
                 if let v = p[key] { c[keyPath: kp] = try v.intValue() }
                 else if required { throw p.error("expected '\(key)' (\(help))") }
             },
             write: { c, _ in [(key, text(c[keyPath: kp]))] },
             check: { c, policy in try bound?.check(key, c[keyPath: kp], policy: policy) })
    }

    /// A number; `late` ones take their default from the config read so far.
    public static func double(_ key: String, _ kp: WritableKeyPath<Config, Double>, _ bound: Bound<Double>? = nil,
                              default late: (@Sendable (Config) -> Double)? = nil, help: String) -> Self {
        Self(keys: [key], type: "number", help: help, late: late != nil,
             read: { c, p in
                 if let v = p[key] { c[keyPath: kp] = try v.doubleValue() } else if let late { c[keyPath: kp] = late(c) }
             },
             write: { c, _ in [(key, text(c[keyPath: kp]))] },
             check: { c, policy in try bound?.check(key, c[keyPath: kp], policy: policy) })
    }

    /// true or false; `onlyWhenTrue` ones appear in labels (and run keys) only when on, so the
    /// keys of runs made before the option existed stay as they were.
    public static func bool(_ key: String, _ kp: WritableKeyPath<Config, Bool>, onlyWhenTrue: Bool = false, help: String) -> Self {
        Self(keys: [key], type: "true | false", help: help,
             read: { c, p in if let v = p[key] { c[keyPath: kp] = try v.boolValue() } },
             write: { c, _ in onlyWhenTrue && !c[keyPath: kp] ? [] : [(key, text(c[keyPath: kp]))] })
    }

    /// One of an enum's cases by raw value.
    public static func choice<T: RawRepresentable & CaseIterable & Sendable>(_ key: String, _ kp: WritableKeyPath<Config, T>,
                                                                            help: String) -> Self where T.RawValue == String {
        Self(keys: [key], type: T.allCases.map(\.rawValue).joined(separator: " | "), help: help,
             read: { c, p in if let v = try p.choice(key, T.self) { c[keyPath: kp] = v } },
             write: { c, _ in [(key, c[keyPath: kp].rawValue)] })
    }

    /// A string (a file path) that may stay empty: written into labels only when set, so labels
    /// without it read back to themselves.
    public static func optionalString(_ key: String, _ kp: WritableKeyPath<Config, String>, help: String) -> Self {
        Self(keys: [key], type: "string", help: help,
             read: { c, p in if let v = p[key] { c[keyPath: kp] = try v.stringValue() } },
             write: { c, _ in c[keyPath: kp].isEmpty ? [] : [(key, c[keyPath: kp])] })
    }

    /// A string (a file path); `required` ones have no default.
    public static func string(_ key: String, _ kp: WritableKeyPath<Config, String>, required: Bool = false, help: String) -> Self {
        Self(keys: [key], type: "string", help: help, required: required,
             read: { c, p in
                 if let v = p[key] { c[keyPath: kp] = try v.stringValue() }
                 else if required { throw p.error("expected '\(key): FILE' (\(help))") }
             },
             write: { c, _ in [(key, c[keyPath: kp])] })
    }

    /// The eviction budget: exactly one of `budget` (tokens), `keep` (fraction kept) or
    /// `compression_ratio` (fraction removed, kvpress's); written as the config wrote it, or with
    /// `canonical` every fraction as compression_ratio.
    public static func budget(_ kp: WritableKeyPath<Config, Budget>) -> Self {
        let keys = ["budget", "keep", "compression_ratio"]
        return Self(keys: keys, type: "tokens | fraction", help: "exactly one of budget (tokens), keep (fraction kept) or compression_ratio (fraction removed)",
                    required: true, isBudget: true,
                    read: { c, p in
                        let given = keys.filter { p[$0] != nil }
                        guard given.count == 1 else {
                            throw p.error("expected exactly one of budget (tokens), keep (fraction kept) or compression_ratio (fraction removed), got \(given.isEmpty ? "none" : given.joined(separator: ", "))")
                        }
                        if let b = p["budget"] { c[keyPath: kp] = .tokens(try b.intValue()); return }
                        if let k = p["keep"] {
                            let v = try k.doubleValue()
                            guard v > 0 && v <= 1 else { throw k.fail("expected a fraction kept in (0, 1], got \(v)") }
                            c[keyPath: kp] = .keep(v); return
                        }
                        c[keyPath: kp] = .ratio(try p["compression_ratio"]!.doubleValue())
                    },
                    write: { c, canonical in
                        switch c[keyPath: kp] {
                        case .tokens(let n): return [("budget", text(n))]
                        case .ratio(let r): return [("compression_ratio", text(r))]
                        case .keep(let v): return canonical ? [("compression_ratio", text(1 - v))] : [("keep", text(v))]
                        }
                    },
                    check: { c, policy in try c[keyPath: kp].validate(policy: policy) })
    }

    /// `schedule` (whether decode-time eviction runs) and `decode_budget` (what it holds the cache at;
    /// written only when not the default, so keys of default runs stay as they were).
    public static func schedule(_ kp: WritableKeyPath<Config, EvictionSchedule>,
                                default late: (@Sendable (Config) -> EvictionSchedule.Phases)? = nil) -> Self {
        Self(keys: ["schedule", "decode_budget"], type: "prefill | always; decode_budget: prompt | context",
             help: "when eviction runs: once after the prefill, or also at every decode step; decode_budget: what decode-time eviction holds the cache at (docs/kvpress-semantics.md)",
             late: late != nil,
             read: { c, p in
                 let phases = try p.choice("schedule", EvictionSchedule.Phases.self) ?? late?(c) ?? c[keyPath: kp].phases
                 guard let db = p["decode_budget"] else { c[keyPath: kp] = EvictionSchedule(phases); return }
                 let value = try p.choice("decode_budget", DecodeBudget.self)!
                 guard phases == .always else {
                     throw db.fail("decode_budget applies to decode-time eviction (schedule: always); this entry's schedule is prefill")
                 }
                 c[keyPath: kp] = EvictionSchedule(phases, decodeBudget: value)
             },
             write: { c, _ in
                 let s = c[keyPath: kp]
                 return [("schedule", s.rawValue)] + (s.decodeBudget == .prompt ? [] : [("decode_budget", s.decodeBudget.rawValue)])
             })
    }

    /// `top_k` (tokens) or `k_fraction` (of the tokens held): exactly one, unless there is a default.
    public static func selectionSize(_ kp: WritableKeyPath<Config, SelectionSize>, required: Bool) -> Self {
        Self(keys: ["top_k", "k_fraction"], type: "tokens | fraction", help: "tokens each step reads: top_k tokens or k_fraction of those held",
             required: required, isBudget: true,
             read: { c, p in
                 let given = ["top_k", "k_fraction"].filter { p[$0] != nil }
                 if given.count > 1 { throw p.error("expected one of top_k (tokens) or k_fraction, got both") }
                 if let k = p["top_k"] { c[keyPath: kp] = .tokens(try k.intValue()); return }
                 if let k = p["k_fraction"] { c[keyPath: kp] = .fraction(try k.doubleValue()); return }
                 if required { throw p.error("expected top_k (tokens) or k_fraction (fraction of the tokens held)") }
             },
             write: { c, _ in
                 switch c[keyPath: kp] { case .tokens(let n): return [("top_k", text(n))]; case .fraction(let f): return [("k_fraction", text(f))] }
             },
             check: { c, policy in try c[keyPath: kp].validate(policy: policy, field: "top_k") })
    }

    /// How the query heads of a GQA group choose (selection policies).
    public static func gqa(_ kp: WritableKeyPath<Config, SelectionGQA>) -> Self {
        .choice("gqa", kp, help: "kv_group: one choice per KV head from the group's summed scores; query_head: each query head chooses, the group reads the union")
    }
}
