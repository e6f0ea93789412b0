import KVPolicies
import Yams

/// Named setups of the selection policies (docs/config.md, "Setups"): `setup: paper` asks for the
/// parameters the paper's own evaluation used, `setup: kvlab` for KVLab's defaults. A setup fills
/// the keys the entry does not give; keys given explicitly win. Every run records which setup its
/// resolved parameters match (`paper`, `kvlab` or `custom`), whatever way they were asked for.
enum PolicySetup {
    struct Entry {
        /// Keys (as a config writes them) and values of each named setup.
        var setups: [String: [(key: String, value: String)]]
        /// The value a key has when a run's parameters omit it (options written only when not the default).
        var implicit: [String: String]
    }

    /// The references are named in docs/config.md next to each setup.
    static let table: [String: Entry] = [
        // mit-han-lab/Quest evaluation/quest_attention.py: pages (chunk_size) of 16, layers 0 and 1
        // dense (`self.layer_id < 2`), selection after repeat_kv, i.e. per query head; the question
        // (the prompt's last 400 characters, evaluation/passkey/passkey.py) is fed token by token
        // through the sparse decode path (`suffix: decode`, the passkey default).
        "quest": Entry(setups: ["paper": [("page_size", "16"), ("dense_layers", "2"), ("gqa", "query_head")],
                                "kvlab": [("page_size", "16"), ("dense_layers", "2"), ("gqa", "kv_group")]],
                       implicit: [:]),
        // hpcgroup/loki methods/pca_topk/modify_llama.py: top-k over every query row, prefill
        // included, per query head after repeat_kv (KVLab's Loki defaults); `kvlab` is the decode-only,
        // group-summed variant.
        "loki": Entry(setups: ["paper": [("gqa", "query_head"), ("phases", "prefill+decode")],
                               "kvlab": [("gqa", "kv_group"), ("phases", "decode")]],
                      implicit: [:]),
        // The exact top-k baseline of the selection papers (hpcgroup/loki methods/baselines/topk/
        // modify_llama.py:108-122; Quest's oracle): per query head. The Loki baseline also masks the
        // prefill rows; KVLab's oracle selects during decoding only (docs/config.md).
        "oracle_topk": Entry(setups: ["paper": [("gqa", "query_head")], "kvlab": [("gqa", "kv_group")]],
                             implicit: [:]),
    ]

    /// Fills in the keys of the entry's `setup`, located at the `setup` field for errors.
    static func apply(_ policy: String, _ p: [String: Field], allowed: [String]) throws -> [String: Field] {
        guard let f = p["setup"] else { return p }
        guard let entry = table[policy] else { throw f.error("policy '\(policy)' has no named setups") }
        let name = try f.string()
        guard let keys = entry.setups[name] else {
            throw f.error("expected one of \(entry.setups.keys.sorted().joined(separator: ", ")), got '\(name)'")
        }
        var out = p
        out["setup"] = nil
        for (key, value) in keys where out[key] == nil {
            guard allowed.contains(key) else {
                if entry.implicit[key] == value { continue }   // this build's behaviour is that value already
                throw f.error("setup '\(name)' of \(policy) needs option '\(key): \(value)', which this build of KVLab does not have")
            }
            let mark = f.node.mark
            out[key] = Field(node: .scalar(.init(value, .implicit, .plain, mark)), path: f.path + "(\(key))", file: f.file)
        }
        return out
    }

    /// Which named setup a resolved policy's parameters match: "paper", "kvlab", "custom", or ""
    /// for a policy without named setups; a stack joins its children's with "+".
    static func name(of spec: PolicySpec) -> String {
        if case .stack(let children) = spec { return children.map(name(of:)).filter { !$0.isEmpty }.joined(separator: "+") }
        guard let entry = table[spec.kind] else { return "" }
        let params = Dictionary(spec.parameters, uniquingKeysWith: { a, _ in a })
        for setup in ["paper", "kvlab"] {
            let keys = entry.setups[setup]!
            if keys.allSatisfy({ (params[$0.key] ?? entry.implicit[$0.key]) == $0.value }) { return setup }
        }
        return "custom"
    }
}
