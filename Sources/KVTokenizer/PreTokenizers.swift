import Foundation

/// A piece of text on its way through the pre-tokenizers. `atStart` says whether it
/// begins at offset 0 of the original input (Metaspace's "first" prepend scheme).
struct Piece {
    var text: String
    var atStart: Bool
}

enum PrependScheme: String {
    case first, never, always
}

/// `tokenizer.json` "pre_tokenizer".
indirect enum PreTokenizer {
    case sequence([PreTokenizer])
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(TextPattern, SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case metaspace(replacement: Unicode.Scalar, scheme: PrependScheme, split: Bool)
    case whitespace
    case whitespaceSplit
    case punctuation(SplitBehavior)
    case charDelimiterSplit(Unicode.Scalar)
    case bert

    static let supported = ["Sequence", "ByteLevel", "Split", "Digits", "Metaspace", "Whitespace",
                            "WhitespaceSplit", "Punctuation", "CharDelimiterSplit", "BertPreTokenizer"]

    /// The regex the ByteLevel pre-tokenizer uses (GPT-2's).
    static let gpt2Regex: OnigRegex = try! OnigRegex(
        pattern: #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#)
    /// The Whitespace pre-tokenizer's regex (Rust `regex` crate semantics for `\w`/`\s`).
    static let whitespaceRegex: OnigRegex = try! OnigRegex(
        pattern: #"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|[^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\s]+"#)

    static func parse(_ node: JSONNode) throws -> PreTokenizer {
        let type = try node.require("type").string()
        switch type {
        case "Sequence":
            return .sequence(try node.require("pretokenizers").array().map(parse))
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: try node.optionalBool("add_prefix_space") ?? true,
                              useRegex: try node.optionalBool("use_regex") ?? true)
        case "Split":
            return .split(try TextPattern.parse(node.require("pattern")),
                          try SplitBehavior.parse(node.require("behavior")),
                          invert: try node.optionalBool("invert") ?? false)
        case "Digits":
            return .digits(individual: try node.optionalBool("individual_digits") ?? false)
        case "Metaspace":
            return .metaspace(replacement: try parseReplacement(node),
                              scheme: try parsePrependScheme(node),
                              split: try node.optionalBool("split") ?? true)
        case "Whitespace": return .whitespace
        case "WhitespaceSplit": return .whitespaceSplit
        case "Punctuation":
            let behavior = try node.child("behavior").map(SplitBehavior.parse) ?? .isolated
            return .punctuation(behavior)
        case "CharDelimiterSplit":
            let d = try node.require("delimiter")
            guard let s = try singleScalar(d.string()) else { throw d.invalid("expected a single character") }
            return .charDelimiterSplit(s)
        case "BertPreTokenizer": return .bert
        default:
            throw TokenizerError.unsupported(path: node.file, field: node.path + ".type", value: type,
                                             supported: supported)
        }
    }

    static func singleScalar(_ s: String) -> Unicode.Scalar? {
        let scalars = s.unicodeScalars
        return scalars.count == 1 ? scalars.first : nil
    }

    static func parseReplacement(_ node: JSONNode) throws -> Unicode.Scalar {
        guard let r = node.child("replacement") else { return "\u{2581}" }
        guard let s = singleScalar(try r.string()) else { throw r.invalid("expected a single character") }
        return s
    }

    static func parsePrependScheme(_ node: JSONNode) throws -> PrependScheme {
        var scheme = PrependScheme.always
        if let p = node.child("prepend_scheme") {
            let raw = try p.string()
            guard let s = PrependScheme(rawValue: raw.lowercased()) else {
                throw TokenizerError.unsupported(path: p.file, field: p.path, value: raw,
                                                 supported: ["first", "never", "always"])
            }
            scheme = s
        }
        if try node.optionalBool("add_prefix_space") == false { scheme = .never }
        return scheme
    }

    /// Split every piece with `f`, keeping `atStart` only for a first slice at offset 0.
    private static func splitEach(_ pieces: [Piece], _ f: (String) -> [(text: String, start: Int)]) -> [Piece] {
        var out: [Piece] = []
        out.reserveCapacity(pieces.count)
        for p in pieces {
            for s in f(p.text) {
                out.append(Piece(text: s.text, atStart: p.atStart && s.start == 0))
            }
        }
        return out
    }

    func preTokenize(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let list):
            var ps = pieces
            for p in list { ps = p.preTokenize(ps) }
            return ps
        case .byteLevel(let addPrefixSpace, let useRegex):
            let ps = Self.splitEach(pieces) { text in
                var t = text
                if addPrefixSpace, t.utf8.first != 0x20 { t = " " + t }
                if useRegex {
                    return TextPattern.regex(Self.gpt2Regex).split(t, behavior: .isolated)
                }
                return [(t, 0)]
            }
            return ps.map { Piece(text: ByteLevelTable.encode($0.text), atStart: $0.atStart) }
        case .split(let pattern, let behavior, let invert):
            return Self.splitEach(pieces) { pattern.split($0, behavior: behavior, invert: invert) }
        case .digits(let individual):
            let p = TextPattern.predicate(CharClass.isNumeric)
            return Self.splitEach(pieces) { p.split($0, behavior: individual ? .isolated : .contiguous) }
        case .metaspace(let replacement, let scheme, let split):
            let rep = String(replacement)
            var out: [Piece] = []
            out.reserveCapacity(pieces.count)
            for piece in pieces {
                var t = replaceLiteral(piece.text, " ", with: rep)
                let startsWithRep = t.unicodeScalars.first == replacement
                switch scheme {
                case .always: if !startsWithRep { t = rep + t }
                case .first: if !startsWithRep, piece.atStart { t = rep + t }
                case .never: break
                }
                if split {
                    for s in TextPattern.predicate({ $0 == replacement }).split(t, behavior: .mergedWithNext) {
                        out.append(Piece(text: s.text, atStart: piece.atStart && s.start == 0))
                    }
                } else {
                    out.append(Piece(text: t, atStart: piece.atStart))
                }
            }
            return out
        case .whitespace:
            return Self.splitEach(pieces) {
                TextPattern.regex(Self.whitespaceRegex).split($0, behavior: .removed, invert: true)
            }
        case .whitespaceSplit:
            return Self.splitEach(pieces) {
                TextPattern.predicate(CharClass.isWhitespace).split($0, behavior: .removed)
            }
        case .punctuation(let behavior):
            return Self.splitEach(pieces) {
                TextPattern.predicate(CharClass.isPunctuation).split($0, behavior: behavior)
            }
        case .charDelimiterSplit(let d):
            return Self.splitEach(pieces) { TextPattern.predicate { $0 == d }.split($0, behavior: .removed) }
        case .bert:
            let ws = PreTokenizer.whitespaceSplit.preTokenize(pieces)
            return PreTokenizer.punctuation(.isolated).preTokenize(ws)
        }
    }
}
