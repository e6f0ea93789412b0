// Support file, not a policy: the policy table of docs/config.md, generated from the descriptors
// (each policy's paper and reference repository are named on its own file).

extension PolicyRegistry {
    /// The `policy` table of docs/config.md: one row per registered policy, its parameters with
    /// their defaults and help. A test checks that the file holds exactly this table.
    public static var markdownTable: String {
        var lines = ["| policy | family | what it does | parameters: default, meaning |", "|---|---|---|---|"]
        for d in all {
            let params = d.parameterRows.map { p -> String in
                let keys = p.keys.map { "`\($0)`" }.joined(separator: " / ")
                let type = p.type.contains("|") ? " (\(p.type))" : ""
                return "\(keys)\(type): \(p.defaultValue ?? "required"), \(p.help)"
            } + (d.setups.isEmpty ? [] : ["`setup`: \(d.setups.map(\.name).joined(separator: " / ")), named parameter sets"])
            let cell = params.isEmpty ? "none" : params.joined(separator: "; ")
            lines.append("| `\(d.name)` | \(d.family.rawValue) | \(d.summary) | \(escape(cell)) |")
        }
        return lines.joined(separator: "\n")
    }

    /// Pipes inside a table cell.
    static func escape(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
}
