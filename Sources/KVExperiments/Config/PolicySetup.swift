import KVPolicies
import Yams

/// Named setups of the selection policies (docs/config.md, "Setups"): `setup: paper` asks for the
/// parameters the paper's own evaluation used, `setup: kvlab` for KVLab's defaults. A setup fills
/// the keys the entry does not give; keys given explicitly win. Every run records which setup its
/// resolved parameters match (`paper`, `kvlab` or `custom`), whatever way they were asked for.
/// The setups and their references are declared by each policy's descriptor.
enum PolicySetup {
    /// Fills in the keys of the entry's `setup`, located at the `setup` field for errors.
    static func apply(_ descriptor: AnyPolicyDescriptor, _ p: [String: Field]) throws -> [String: Field] {
        guard let f = p["setup"] else { return p }
        if descriptor.setups.isEmpty { throw f.error("policy '\(descriptor.name)' has no named setups") }
        let name = try f.string()
        guard let setup = descriptor.setups.first(where: { $0.name == name }) else {
            throw f.error("expected one of \(descriptor.setups.map(\.name).sorted().joined(separator: ", ")), got '\(name)'")
        }
        var out = p
        out["setup"] = nil
        for (key, value) in setup.values where out[key] == nil {
            guard descriptor.keys.contains(key) else {
                throw f.error("setup '\(name)' of \(descriptor.name) needs option '\(key): \(value)', which this build of KVLab does not have")
            }
            let mark = f.node.mark
            out[key] = Field(node: .scalar(.init(value, .implicit, .plain, mark)), path: f.path + "(\(key))", file: f.file)
        }
        return out
    }

    /// Which named setup a resolved policy's parameters match: "paper", "kvlab", "custom", or ""
    /// for a policy without named setups; a stack joins its children's with "+".
    static func name(of spec: PolicySpec) -> String {
        if let children = spec.children { return children.map(name(of:)).filter { !$0.isEmpty }.joined(separator: "+") }
        guard let setups = spec.descriptor?.setups, !setups.isEmpty else { return "" }
        let params = Dictionary(spec.parameters, uniquingKeysWith: { a, _ in a })
        for setup in setups where setup.values.allSatisfy({ params[$0.key] == $0.value }) { return setup.name }
        return "custom"
    }
}
