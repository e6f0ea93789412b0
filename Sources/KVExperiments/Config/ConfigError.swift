import Foundation
import Yams

/// A configuration problem located in its file: "file:line:column: field 'x': message".
public struct ConfigError: LocalizedError, Equatable {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var field: String
    public var message: String

    public init(file: String, line: Int? = nil, column: Int? = nil, field: String, message: String) {
        self.file = file; self.line = line; self.column = column; self.field = field; self.message = message
    }

    public var errorDescription: String? {
        var where_ = file
        if let line { where_ += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        return field.isEmpty ? "\(where_): \(message)" : "\(where_): field '\(field)': \(message)"
    }
}

/// A YAML node with the path of the field it came from, for typed reads with located errors.
struct Field {
    let node: Node
    let path: String
    let file: String

    func error(_ message: String) -> ConfigError {
        ConfigError(file: file, line: node.mark.map { $0.line }, column: node.mark.map { $0.column },
                    field: path, message: message)
    }

    /// A short rendering of the value for messages.
    var shown: String {
        switch node {
        case .scalar(let s): return "'\(s.string)'"
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        }
    }

    var isNull: Bool { if case .scalar(let s) = node { return ["", "~", "null", "Null", "NULL"].contains(s.string) && s.style == .plain }; return false }

    func child(_ key: String) -> Field? {
        guard case .mapping(let m) = node else { return nil }
        for (k, v) in m where k.string == key { return Field(node: v, path: path.isEmpty ? key : "\(path).\(key)", file: file) }
        return nil
    }

    /// The mapping's entries, rejecting unknown and duplicate keys.
    func mapping(allowed: [String]) throws -> [String: Field] {
        guard case .mapping(let m) = node else { throw error("expected a mapping, got \(shown)") }
        var out: [String: Field] = [:]
        for (k, v) in m {
            guard let key = k.string else { throw error("expected string keys") }
            let f = Field(node: v, path: path.isEmpty ? key : "\(path).\(key)", file: file)
            guard allowed.contains(key) else {
                throw Field(node: k, path: f.path, file: file)
                    .error("unknown key; expected one of: \(allowed.joined(separator: ", "))")
            }
            if out[key] != nil { throw Field(node: k, path: f.path, file: file).error("duplicate key") }
            out[key] = f
        }
        return out
    }

    func list() throws -> [Field] {
        guard case .sequence(let s) = node else { throw error("expected a list, got \(shown)") }
        return s.enumerated().map { Field(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    /// A scalar or a list of scalars: the values a sweep axis takes.
    func values() -> [Field] {
        if case .sequence(let s) = node { return s.enumerated().map { Field(node: $1, path: "\(path)[\($0)]", file: file) } }
        return [self]
    }

    func string() throws -> String {
        guard case .scalar(let s) = node else { throw error("expected a string, got \(shown)") }
        return s.string
    }
    func int(min: Int? = nil) throws -> Int {
        // Yams reads YAML 1.1's base-60 integers ("1:20") and traps when one overflows Int (found by
        // FuzzYAMLConfig); no config value is written that way, so a ':' never reaches it.
        guard case .scalar(let s) = node, !s.string.contains(":"), let v = node.int else {
            throw error("expected an integer, got \(shown)")
        }
        if let min, v < min { throw error("expected an integer >= \(min), got \(v)") }
        return v
    }
    func double() throws -> Double {
        guard case .scalar(let s) = node, !s.string.contains(":"), let v = node.float, v.isFinite else {
            throw error("expected a number, got \(shown)")
        }
        return v
    }
    func bool() throws -> Bool {
        guard case .scalar = node, let v = node.bool else { throw error("expected true or false, got \(shown)") }
        return v
    }
    func choice<T: RawRepresentable & CaseIterable>(_ type: T.Type) throws -> T where T.RawValue == String {
        let s = try string()
        guard let v = T(rawValue: s) else {
            throw error("expected one of \(T.allCases.map(\.rawValue).joined(separator: ", ")), got '\(s)'")
        }
        return v
    }
}
