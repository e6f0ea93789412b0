import KVPolicies

/// `policies:` entries -> PolicySpec values, validated by building each policy (docs/config.md).
/// What an entry may say comes from the policy's descriptor (`PolicyRegistry`): its keys, types,
/// defaults and setups; nothing here names a policy.
enum PolicyParser {
    static func expand(_ f: Field) throws -> [PolicySpec] {
        if let stack = f.child("stack") {
            _ = try f.mapping(allowed: ["stack"])
            let children = try stack.list()
            if children.isEmpty { throw stack.error("expected at least one policy in the stack") }
            var combos: [[PolicySpec]] = [[]]
            for c in children {
                let options = try expand(c)
                if combos.count * options.count > Sweep.maxPoints {
                    throw stack.error("this stack sweeps more than \(Sweep.maxPoints) combinations of its children's points")
                }
                combos = combos.flatMap { prefix in options.map { prefix + [$0] } }
            }
            return try combos.map { try validated(.stack($0), at: stack) }
        }
        guard let nameField = f.child("policy") else {
            throw f.error("expected 'policy: NAME' (one of \(PolicySpec.names.joined(separator: ", "))) or 'stack: [...]'")
        }
        let name = try nameField.string()
        guard let descriptor = PolicyRegistry.descriptor(named: name) else {
            throw nameField.error("unknown policy '\(name)'; known: \(PolicySpec.names.joined(separator: ", "))")
        }
        let keys = descriptor.keys
        return try Sweep.expand(f, allowed: ["policy"] + keys, fixed: ["policy"]).map { p in
            let given = try PolicySetup.apply(descriptor, p)
            let spec = try descriptor.spec(ParameterInputs(given, entryError: { f.error($0) }))
            return try validated(spec, at: f)
        }
    }

    /// Keys a policy's error field may stand for: the one the entry used is named in the error
    /// (`k_fraction: 2` is reported at k_fraction, not at top_k).
    static let fieldAliases: [String: [String]] = [
        "budget": ["budget", "keep", "compression_ratio"], "top_k": ["top_k", "k_fraction"], "k_fraction": ["k_fraction", "top_k"],
        "rank": ["rank", "d_fraction", "explained_variance"],
    ]

    /// Builds the policy once so that bad parameters fail at config time, with the entry's location.
    static func validated(_ spec: PolicySpec, at f: Field) throws -> PolicySpec {
        do { _ = try spec.make() } catch let e as PolicyError {
            if case .invalidParameter(_, let field, let message) = e,
               let child = (fieldAliases[field] ?? [field]).lazy.compactMap({ f.child($0) }).first {
                throw child.error(message)
            }
            if case .invalidParameter("stack", _, let message) = e { throw f.error(message) }
            throw f.error(e.localizedDescription)
        }
        return spec
    }
}

/// A config's scalar as a policy parameter value: typed reads with the file, line and field in errors.
extension Field: ParameterValue {
    func intValue() throws -> Int { try int() }
    func doubleValue() throws -> Double { try double() }
    func boolValue() throws -> Bool { try bool() }
    func stringValue() throws -> String { try string() }
    func fail(_ message: String) -> Error { error(message) }
}
