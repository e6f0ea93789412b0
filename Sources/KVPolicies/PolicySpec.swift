// Support file, not a policy: a policy or a stack of policies as a value, for configs and results.
// Each policy's paper and reference repository are named on its own file.
import KVCacheCore

/// A policy and its parameters as a value (one policy's typed `PolicyConfig`, or a stack): what
/// configs sweep, what results record, and what `make()` turns into a live `CachePolicy`.
/// Everything it knows about a policy comes from that policy's descriptor.
public struct PolicySpec: Hashable, Sendable {
    indirect enum Node: Hashable, Sendable {
        case one(AnyConfig)
        case stack([PolicySpec])
    }
    let node: Node

    public init<C: PolicyConfig>(_ config: C) { node = .one(AnyConfig(base: config)) }
    init(node: Node) { self.node = node }

    /// Policies applied together (composition: retentions intersect, selections narrow).
    public static func stack(_ children: [PolicySpec]) -> PolicySpec { PolicySpec(node: .stack(children)) }
    /// The full cache: the reference every policy is compared with.
    public static var full: PolicySpec { PolicySpec(FullCacheConfig()) }

    /// A stack's children; nil for a single policy.
    public var children: [PolicySpec]? { if case .stack(let c) = node { return c }; return nil }
    /// The typed config of a single policy of type `C`.
    public func config<C: PolicyConfig>(as type: C.Type) -> C? { if case .one(let c) = node { return c.base as? C }; return nil }
    /// The typed config of a single policy.
    public var config: (any PolicyConfig)? { if case .one(let c) = node { return c.base }; return nil }

    /// Registered policy names (what configs and the command line accept).
    public static var names: [String] { PolicyRegistry.names }

    /// Builds the policy (validating its parameters; a stack checks that its layouts combine).
    public func make() throws -> CachePolicy {
        switch node {
        case .one(let c): return try c.base.make()
        case .stack(let children):
            if children.isEmpty { throw PolicyError.invalidParameter(policy: "stack", field: "stack", message: "expected at least one policy") }
            _ = try layout   // conflicts first, before any child reads its files
            return try PolicyStack(children.map { try $0.make() })
        }
    }

    /// What the policy needs from storage; a stack's children's combined, or a PolicyError naming the conflict.
    public var layout: StorageLayout {
        get throws {
            switch node {
            case .one(let c): return c.base.layout
            case .stack(let children):
                do { return try StorageLayout.combine(children.map { try $0.layout }) } catch let e as LayoutConflict {
                    throw PolicyError.invalidParameter(policy: "stack", field: "stack", message: e.message)
                }
            }
        }
    }

    /// Builds the policy for a model with `modelKVHeads` KV heads: as `make()`, and the heads it
    /// stores must divide the model's (head pooling), and never exceed them.
    public func make(modelKVHeads: Int) throws -> CachePolicy {
        let policy = try make()
        let stored = policy.layout.storedKVHeads ?? modelKVHeads
        // More heads than the model's is refused, not clamped to "no pooling" (issue 16).
        guard stored >= 1, stored <= modelKVHeads, modelKVHeads % stored == 0 else {
            throw PolicyError.invalidParameter(policy: kind, field: "kv_heads",
                message: "expected a divisor of the model's \(modelKVHeads) KV heads, got \(stored)")
        }
        return policy
    }

    /// Builds the policy for a model of cache shape `model`: as `make(modelKVHeads:)`, and a KV-head
    /// projection (svd_heads) must have been fitted for the model's layers, KV heads and head_dim, and a policy
    /// reading a per-head file (`ModelShapeChecked`) must fit the model.
    /// A policy that types tokens by id (`VocabularyBound`: NAtS) is bound to `vocabulary()`, asked
    /// for only then (nil: the model's vocabulary is unknown; such a policy that needs it throws).
    public func make(model shape: CacheShape, vocabulary: (() -> TokenVocabulary?)? = nil) throws -> CachePolicy {
        let policy = try make(modelKVHeads: shape.kvHeads)
        if let p = policy.layout.kvHeadProjection, p.layers != shape.layers || p.modelKVHeads != shape.kvHeads || p.headDim != shape.headDim {
            throw PolicyError.invalidParameter(policy: kind, field: "calibration",
                message: "fitted for \(p.layers) layers x \(p.modelKVHeads) KV heads x head_dim \(p.headDim); the model has \(shape.layers) x \(shape.kvHeads) x \(shape.headDim)")
        }
        for p in [policy] + ((policy as? PolicyStack)?.children ?? []) {
            try (p as? ModelShapeChecked)?.check(model: shape)
            try (p as? VocabularyBound)?.bind(vocabulary: vocabulary?())
        }
        return policy
    }

    /// The policy's name in configs and results; a stack joins its children's with "+".
    public var kind: String {
        switch node {
        case .one(let c): return c.descriptor.name
        case .stack(let c): return c.map(\.kind).joined(separator: "+")
        }
    }

    /// What the policy saves; a stack joins its children's with "+".
    public var family: String {
        switch node {
        case .one(let c): return c.descriptor.family.rawValue
        case .stack(let c): return c.map(\.family).joined(separator: "+")
        }
    }

    /// Parameters as ordered key/value strings, the budget as the user wrote it (`keep`,
    /// `compression_ratio` or `budget`).
    public var parameters: [(String, String)] { parameters(canonical: false) }

    /// Parameters with fractional budgets written as kvpress's compression_ratio (`keep: 0.125` as
    /// compression_ratio=0.875): the form run keys were made of before `keep` was echoed, so that
    /// keys (resume, compare) do not depend on how the user wrote the budget.
    public var canonicalParameters: [(String, String)] { parameters(canonical: true) }

    func parameters(canonical: Bool) -> [(String, String)] {
        switch node {
        case .one(let c): return c.base.parameters(canonical: canonical)
        case .stack(let c):
            return c.enumerated().flatMap { i, p in [("\(i).policy", p.kind)] + p.parameters(canonical: canonical).map { ("\(i).\($0.0)", $0.1) } }
        }
    }

    /// One JSON object of the parameters (values as JSON strings or numbers).
    public var parametersJSON: String {
        "{" + parameters.map { k, v in "\"\(k)\": " + (Double(v) != nil ? v : "\"\(v)\"") }.joined(separator: ", ") + "}"
    }

    /// A short human label echoing the budget as written, e.g. "snapkv(keep=0.125,window=64,kernel=5,pooling=avg)".
    public var label: String { label(canonical: false) }

    /// The label with fractional budgets as compression_ratio: what run keys are made of.
    public var canonicalLabel: String { label(canonical: true) }

    func label(canonical: Bool) -> String {
        switch node {
        case .one(let c): return c.base.label(canonical: canonical)
        case .stack(let c): return c.map { $0.label(canonical: canonical) }.joined(separator: " + ")
        }
    }

    /// The budget as the config wrote it: its key (`budget`, `keep`, `compression_ratio`, `top_k`,
    /// `k_fraction`) and value, from the parameter the descriptor marks as the policy's budget; a
    /// stack's is its first child's that has one; nil without a budget (full, KIVI, sharing).
    /// Recorded per run as `budget_kind` / `budget_value`.
    public var budgetForm: (kind: String, value: Double)? {
        switch node {
        case .one(let c): return c.base.budgetForm
        case .stack(let c): return c.lazy.compactMap(\.budgetForm).first
        }
    }

    /// Tokens the policy (every child of a stack) keeps by position whatever its scores.
    public var forcedTokens: [ForcedTokens] {
        switch node {
        case .one(let c): return c.base.forcedTokens
        case .stack(let c): return c.flatMap(\.forcedTokens)
        }
    }

    /// The single policy's descriptor (nil for a stack).
    public var descriptor: AnyPolicyDescriptor? { if case .one(let c) = node { return c.descriptor }; return nil }
}

/// A typed config behind one type (equality and hashing are the config's own).
struct AnyConfig: Hashable, @unchecked Sendable {
    let base: any PolicyConfig
    var descriptor: AnyPolicyDescriptor { Self.descriptor(of: base) }
    static func descriptor<C: PolicyConfig>(of c: C) -> AnyPolicyDescriptor { C.descriptor }
    static func == (a: AnyConfig, b: AnyConfig) -> Bool { a.base.isEqual(to: b.base) }
    func hash(into h: inout Hasher) { h.combine(ObjectIdentifier(type(of: base))); base.hash(into: &h) }
}
