// Support file, not a policy: the declaration every policy makes once, after kvpress's presses,
// each a dataclass that is its own spec (reference: NVIDIA/kvpress, presses/*.py), and its
// registry of default presses that the tests iterate (tests/default_presses.py).
import KVCacheCore

/// What a policy saves (../shared/POLICIES.md families): plots draw one line per family.
public enum PolicyFamily: String, Sendable, CaseIterable {
    case full, eviction, selection, sharing, quantization
}

/// A policy's parameters as a typed value: what configs sweep, what results record (labels, run
/// keys, `budget_kind`/`budget_value`), and what `make()` turns into a live `CachePolicy`. Each
/// policy declares one, with its `descriptor`, in its own file; `PolicyRegistry` lists them.
public protocol PolicyConfig: Hashable, Sendable {
    /// The policy's declaration: name, family, typed parameters (defaults, bounds, help), setups.
    static var descriptor: PolicyDescriptor<Self> { get }
    /// Builds the live policy (validating the parameters).
    func make() throws -> CachePolicy
    /// Tokens the policy keeps by position whatever its scores (SnapKV's window, StreamingLLM's
    /// sinks): `kvlab validate` warns when they fill half of a budget. Default: none.
    var forcedTokens: [ForcedTokens] { get }
    /// What a run of the policy costs next to the full cache (shard plans). Default: `.light`.
    var cost: PolicyCost { get }
    /// What the policy needs from storage and keeps beside it (codes, merged layers, pooled heads,
    /// a key basis, shifted positions, mirrored keys): a stack's layouts must combine. Default:
    /// Float32 rows, nothing kept. The live policy's `layout` is this one.
    var layout: StorageLayout { get }
    /// How much of the full-cache reference's dense prefill a sweep may hand this policy instead of
    /// running its own (PolicySpec+Prefill.swift, docs/benchmarks/sweep.md). Default: `.none`, the
    /// policy prefills on its own; a policy that evicts, quantizes or merges only at step ends, after
    /// each layer attended, declares `.whole`. The cache checks the claim at replay.
    var prefillSharing: PrefillSharing { get }
    // Capabilities other parts of KVLab ask a policy about go here, each with a default below.
}

extension PolicyConfig {
    public var forcedTokens: [ForcedTokens] { [] }
    public var cost: PolicyCost { .light }
    public var layout: StorageLayout { StorageLayout(owner: Self.descriptor.name) }
    public var prefillSharing: PrefillSharing { .none }

    /// Ordered key/value strings; fractional budgets as the config wrote them (`keep`), or with
    /// `canonical` as kvpress's compression_ratio (what run keys are made of).
    public func parameters(canonical: Bool = false) -> [(String, String)] {
        Self.descriptor.parameters.flatMap { $0.write(self, canonical) }
    }

    /// Checks every parameter's bound and the policy's cross-field rules; errors name the field.
    public func validate() throws { try Self.descriptor.validate(self) }

    /// "snapkv(keep=0.25,window=16,kernel=5,pooling=avg)": the one label format of configs,
    /// results and live policies (`CachePolicy.name`).
    public func label(canonical: Bool = false) -> String {
        PolicyDescriptor<Self>.label(Self.descriptor.name, parameters(canonical: canonical))
    }

    /// The budget as the config wrote it (key and value), from the parameter marked as the budget.
    public var budgetForm: (kind: String, value: Double)? {
        guard let p = Self.descriptor.parameters.first(where: \.isBudget), let (k, v) = p.write(self, false).first,
              let value = Double(v) else { return nil }
        return (k, value)
    }

    func isEqual(to other: any PolicyConfig) -> Bool { (other as? Self) == self }
}

/// A policy class built from its typed config (validated in its initialiser): its name is the
/// config's label, its storage layout the config's.
public protocol ConfiguredPolicy: CachePolicy {
    associatedtype Config: PolicyConfig
    var config: Config { get }
}

extension ConfiguredPolicy {
    public var name: String { config.label() }
    public var layout: StorageLayout { config.layout }
}

/// Tokens a policy keeps by position: what they are, how many, against which budget.
public struct ForcedTokens: Sendable {
    public var what: String
    public var count: Int
    public var budget: Budget
    public init(_ what: String, count: Int, budget: Budget) { self.what = what; self.count = count; self.budget = budget }
}

/// Cost classes of the shard planner (docs/cluster.md): most policies cost what the full cache
/// costs; SnapKV/PyramidKV score an observation window; H2O's causal scoring materializes the
/// prefill attention; `full` reuses the reference.
public enum PolicyCost: String, Sendable { case reuse, light, window, prefillScores = "prefill-scores" }

/// A named set of parameter values (`setup: paper`): keys as a config writes them, and values.
public struct PolicySetupValues: Sendable {
    public var name: String
    public var values: [(key: String, value: String)]
    public init(_ name: String, _ values: [(key: String, value: String)]) { self.name = name; self.values = values }
}

/// The one declaration of a policy: its config name, family, one-line summary, typed parameters
/// (keys, defaults, bounds, help), named setups and a sample entry. The YAML parser, `--policy`
/// strings, labels and run keys, `budget_kind`/`budget_value`, the policy table of docs/config.md
/// and the contract tests all derive from it.
public struct PolicyDescriptor<Config: PolicyConfig>: Sendable {
    public let name: String
    public let family: PolicyFamily
    public let summary: String
    /// The config with every default (required parameters hold placeholders, never shown).
    public let defaults: Config
    public let parameters: [PolicyParameter<Config>]
    public let setups: [PolicySetupValues]
    /// Parameters of a sample entry, as YAML after `policy: NAME` ("keep: 0.25, window: 16").
    public let sample: String
    /// Rules across parameters (a window below the budget...), after each parameter's bound.
    let check: @Sendable (Config) throws -> Void
    /// Configs the contract tests run (kvpress's tests/default_presses.py), on a small model (2
    /// layers, 2 KV heads) with a prompt of about a hundred tokens: with `tokens` nil, configs that must give the full cache's
    /// logits (a budget above the context, k = T, share factor 1, 16 bits...); otherwise configs that
    /// keep or read about `tokens` tokens per KV head where the policy has such a budget.
    /// `calibration` is a `kvlab calibrate` file of the test model.
    public let examples: @Sendable (_ tokens: Int?, _ calibration: String) -> [Config]

    public init(name: String, family: PolicyFamily, summary: String, defaults: Config,
                parameters: [PolicyParameter<Config>], setups: [PolicySetupValues] = [], sample: String,
                check: @escaping @Sendable (Config) throws -> Void = { _ in },
                examples: @escaping @Sendable (_ tokens: Int?, _ calibration: String) -> [Config]) {
        self.name = name; self.family = family; self.summary = summary; self.defaults = defaults
        self.parameters = parameters; self.setups = setups; self.sample = sample; self.check = check
        self.examples = examples
    }

    /// Every bound, then the cross-field rules.
    public func validate(_ c: Config) throws {
        for p in parameters { try p.check(c, name) }
        try check(c)
    }

    /// A typed config from the given values of one entry: parameters read in order, those whose
    /// default depends on another parameter last.
    public func parse(_ inputs: ParameterInputs) throws -> Config {
        var c = defaults
        for p in parameters where !p.late { try p.read(&c, inputs) }
        for p in parameters where p.late { try p.read(&c, inputs) }
        return c
    }

    static func label(_ name: String, _ parameters: [(String, String)]) -> String {
        let p = parameters.map { "\($0.0)=\($0.1)" }.joined(separator: ",")
        return p.isEmpty ? name : "\(name)(\(p))"
    }
}

/// A descriptor without its config type: what the registry, the parser and the docs use.
public protocol AnyPolicyDescriptor: Sendable {
    var name: String { get }
    var family: PolicyFamily { get }
    var summary: String { get }
    var setups: [PolicySetupValues] { get }
    var sample: String { get }
    /// The config keys an entry of this policy accepts, in order (`setup` last when it has setups).
    var keys: [String] { get }
    /// One row per parameter for the docs: keys, type, default (nil when required), help.
    var parameterRows: [ParameterRow] { get }
    /// The spec of one entry from its given values.
    func spec(_ inputs: ParameterInputs) throws -> PolicySpec
    /// The contract tests' configs (`PolicyDescriptor.examples`) as specs.
    func exampleSpecs(tokens: Int?, calibration: String) -> [PolicySpec]
}

/// A parameter as the docs show it.
public struct ParameterRow: Sendable {
    public var keys: [String]
    public var type: String
    public var defaultValue: String?
    public var help: String
}

extension PolicyDescriptor: AnyPolicyDescriptor {
    public var keys: [String] { parameters.flatMap(\.keys) + (setups.isEmpty ? [] : ["setup"]) }
    public var parameterRows: [ParameterRow] {
        parameters.map { p in
            ParameterRow(keys: p.keys, type: p.type, defaultValue: p.required ? nil : p.defaultText ?? p.write(defaults, false).map(\.1).joined(separator: ", "),
                         help: p.help)
        }
    }
    public func spec(_ inputs: ParameterInputs) throws -> PolicySpec { PolicySpec(try parse(inputs)) }
    public func exampleSpecs(tokens: Int?, calibration: String) -> [PolicySpec] { examples(tokens, calibration).map(PolicySpec.init) }
}
