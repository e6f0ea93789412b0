import KVPolicies
import Yams

/// `--policy NAME[:key=value,...]` on the command line (`kvlab generate`): the config's policy
/// names and keys (docs/config.md), read by the same parser as a YAML `policies:` entry, so
/// defaults, validation and messages are the config's. One policy per argument: a list value
/// (a sweep in a config) is rejected; several arguments build a stack, in order.
///
///     --policy snapkv:keep=0.25,window=32
///     --policy streaming_llm:budget=256,sinks=4 --policy kivi:bits=2
public enum PolicyArgument {
    /// The policy one `--policy` argument names.
    public static func parse(_ argument: String) throws -> PolicySpec {
        let where_ = "--policy '\(argument)'"
        func fail(_ message: String, field: String = "") -> ConfigError {
            ConfigError(file: where_, field: field, message: message)
        }
        let trimmed = argument.trimmingCharacters(in: .whitespaces)
        let name: Substring, rest: Substring
        if let colon = trimmed.firstIndex(of: ":") {
            name = trimmed[..<colon]
            rest = trimmed[trimmed.index(after: colon)...]
        } else {
            name = Substring(trimmed)
            rest = ""
        }
        guard !name.isEmpty else {
            throw fail("expected NAME or NAME:key=value,... with NAME one of \(PolicySpec.names.joined(separator: ", "))")
        }
        guard name != "stack" else { throw fail("repeat --policy to build a stack, one policy per --policy") }
        var lines = ["policy: \(name)"]
        for pair in splitTopLevel(rest) where !pair.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let eq = pair.firstIndex(of: "=") else { throw fail("expected key=value, got '\(pair)'") }
            let key = pair[..<eq].trimmingCharacters(in: .whitespaces)
            let value = pair[pair.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            guard !key.isEmpty, !value.isEmpty else { throw fail("expected key=value, got '\(pair)'") }
            guard key != "policy", key != "zip" else { throw fail("'\(key)' is not a policy parameter", field: key) }
            lines.append("\(key): \(value)")
        }
        let node: Node
        do {
            guard let n = try Yams.compose(yaml: lines.joined(separator: "\n")) else { throw fail("empty policy") }
            node = n
        } catch let e as ConfigError { throw e } catch {
            throw fail("cannot read the parameters: \(error)")
        }
        let field = Field(node: node, path: "", file: where_)
        if case .mapping(let m) = node {
            for (k, v) in m {
                guard case .scalar = v else {
                    throw fail("expected one value, got \(Field(node: v, path: "", file: where_).shown) (one policy per --policy; sweeps belong in a config)",
                               field: k.string ?? "")
                }
            }
        }
        do {
            let specs = try PolicyParser.expand(field)
            guard specs.count == 1 else { throw fail("expected one policy, got \(specs.count)") }
            return specs[0]
        } catch let e as ConfigError {
            // Positions in the generated YAML mean nothing to the user: keep the field and message.
            throw ConfigError(file: where_, field: e.field, message: e.message)
        }
    }

    /// The policy of every `--policy` argument: none is the full cache, one is that policy,
    /// several are a stack in the given order (validated as a config's `stack:`).
    public static func policy(_ arguments: [String]) throws -> PolicySpec {
        let specs = try arguments.map(parse)
        switch specs.count {
        case 0: return .full
        case 1: return specs[0]
        default:
            let stack = PolicySpec.stack(specs)
            do { _ = try stack.make() } catch {
                throw ConfigError(file: arguments.map { "--policy '\($0)'" }.joined(separator: " "), field: "",
                                  message: error.localizedDescription)
            }
            return stack
        }
    }

    /// Splits "a=1,b=[2,3]" at the commas outside brackets and quotes.
    static func splitTopLevel(_ s: Substring) -> [String] {
        var out: [String] = [], current = "", depth = 0
        var quote: Character? = nil
        for c in s {
            if let q = quote {
                if c == q { quote = nil }
            } else if c == "\"" || c == "'" {
                quote = c
            } else if c == "[" || c == "{" {
                depth += 1
            } else if c == "]" || c == "}" {
                depth -= 1
            } else if c == ",", depth == 0 {
                out.append(current)
                current = ""
                continue
            }
            current.append(c)
        }
        out.append(current)
        return out
    }
}
