import Foundation

/// Errors thrown while loading a `tokenizer.json`. Every case names the file and,
/// where one is at fault, the JSON field (a dotted path such as `model.vocab` or
/// `pre_tokenizer.pretokenizers[0].pattern.Regex`).
public enum TokenizerError: Error, LocalizedError, Equatable, CustomStringConvertible {
    /// Neither the path nor `<path>/tokenizer.json` exists.
    case fileNotFound(path: String)
    /// The file exists but could not be read.
    case unreadable(path: String, reason: String)
    /// The file is not valid JSON (the reason gives line and column).
    case invalidJSON(path: String, reason: String)
    /// A required field is missing (or null).
    case missingField(path: String, field: String)
    /// A field has the wrong JSON type or an impossible value.
    case invalidField(path: String, field: String, reason: String)
    /// A field names a component this reader does not implement, e.g. model type "Unigram".
    case unsupported(path: String, field: String, value: String, supported: [String])

    /// The file the error is about.
    public var path: String {
        switch self {
        case .fileNotFound(let p), .unreadable(let p, _), .invalidJSON(let p, _),
             .missingField(let p, _), .invalidField(let p, _, _), .unsupported(let p, _, _, _):
            return p
        }
    }

    /// The JSON field the error is about, if any.
    public var field: String? {
        switch self {
        case .fileNotFound, .unreadable, .invalidJSON: return nil
        case .missingField(_, let f), .invalidField(_, let f, _), .unsupported(_, let f, _, _): return f
        }
    }

    public var errorDescription: String? { description }

    public var description: String {
        switch self {
        case .fileNotFound(let p):
            return "tokenizer not found: \(p) (expected a tokenizer.json file or a folder containing one)"
        case .unreadable(let p, let r):
            return "cannot read tokenizer file \(p): \(r)"
        case .invalidJSON(let p, let r):
            return "\(p): invalid JSON: \(r)"
        case .missingField(let p, let f):
            return "\(p): missing field \"\(f)\""
        case .invalidField(let p, let f, let r):
            return "\(p): invalid field \"\(f)\": \(r)"
        case .unsupported(let p, let f, let v, let s):
            let what = Self.componentName(field: f)
            let list = s.isEmpty ? "" : " (supported: \(s.joined(separator: ", ")))"
            return "\(p): unsupported \(what) \"\(v)\" in field \"\(f)\"\(list)"
        }
    }

    private static func componentName(field: String) -> String {
        let root = field.split(separator: ".").first.map(String.init) ?? field
        let base = root.split(separator: "[").first.map(String.init) ?? root
        switch base {
        case "model": return field.hasSuffix(".type") ? "model type" : "model setting"
        case "normalizer": return "normalizer"
        case "pre_tokenizer": return "pre-tokenizer"
        case "decoder": return "decoder"
        case "post_processor": return "post-processor"
        default: return "value"
        }
    }
}
