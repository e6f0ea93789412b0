import ArgumentParser
import KVPolicies

/// `kvlab policies`: what each registered policy accepts, from its descriptor.
struct PoliciesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "policies",
        abstract: "The registered policies: family, parameters with defaults and help, setups and an example entry.",
        discussion: "Everything printed comes from each policy's descriptor (its own file under Sources/KVPolicies). " +
            "--markdown prints the policy table of docs/config.md.")

    @Argument(help: "Only this policy.") var name: String?
    @Flag(help: "Print docs/config.md's policy table (Markdown).") var markdown = false

    func run() throws {
        if markdown { print(PolicyRegistry.markdownTable); return }
        if let name, PolicyRegistry.descriptor(named: name) == nil {
            throw ValidationError("unknown policy '\(name)'; known: \(PolicyRegistry.all.map(\.name).joined(separator: ", "))")
        }
        for d in PolicyRegistry.all where name == nil || d.name == name {
            print("\(d.name) (\(d.family.rawValue)): \(d.summary)")
            for p in d.parameterRows {
                print("  \(p.keys.joined(separator: " | ")) [\(p.type)] = \(p.defaultValue ?? "required"): \(p.help)")
            }
            for s in d.setups { print("  setup: \(s.name) = " + s.values.map { "\($0.key): \($0.value)" }.joined(separator: ", ")) }
            print("  e.g. {policy: \(d.name)\(d.sample.isEmpty ? "" : ", " + d.sample)}")
        }
    }
}
