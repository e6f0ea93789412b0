import Foundation

/// `tokenizer.json` "decoder". Each decoder maps a list of token strings to a new
/// list (`decode_chain`); the final strings are concatenated.
indirect enum Decoder {
    case sequence([Decoder])
    case byteLevel
    case replace(TextPattern, String)
    case byteFallback
    case fuse
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case metaspace(replacement: Unicode.Scalar, scheme: PrependScheme)
    case bpe(suffix: String)

    static let supported = ["Sequence", "ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip",
                            "Metaspace", "BPEDecoder"]

    static func parse(_ node: JSONNode) throws -> Decoder {
        let type = try node.require("type").string()
        switch type {
        case "Sequence":
            return .sequence(try node.require("decoders").array().map(parse))
        case "ByteLevel":
            return .byteLevel
        case "Replace":
            return .replace(try TextPattern.parse(node.require("pattern")), try node.require("content").string())
        case "ByteFallback":
            return .byteFallback
        case "Fuse":
            return .fuse
        case "Strip":
            let c = try node.require("content")
            guard let s = PreTokenizer.singleScalar(try c.string()) else { throw c.invalid("expected a single character") }
            let start = try node.optionalInt("start") ?? 0
            let stop = try node.optionalInt("stop") ?? 0
            guard start >= 0, stop >= 0 else { throw node.invalid("start and stop must not be negative") }
            return .strip(content: s, start: start, stop: stop)
        case "Metaspace":
            return .metaspace(replacement: try PreTokenizer.parseReplacement(node),
                              scheme: try PreTokenizer.parsePrependScheme(node))
        case "BPEDecoder":
            return .bpe(suffix: try node.optionalString("suffix") ?? "</w>")
        default:
            throw TokenizerError.unsupported(path: node.file, field: node.path + ".type", value: type,
                                             supported: supported)
        }
    }

    func decodeChain(_ tokens: [String]) -> [String] {
        switch self {
        case .sequence(let list):
            var t = tokens
            for d in list { t = d.decodeChain(t) }
            return t
        case .byteLevel:
            var bytes: [UInt8] = []
            for token in tokens {
                let start = bytes.count
                var ok = true
                for s in token.unicodeScalars {
                    guard let b = ByteLevelTable.scalarToByte[s.value] else { ok = false; break }
                    bytes.append(b)
                }
                if !ok {
                    bytes.removeSubrange(start...)
                    bytes.append(contentsOf: token.utf8)
                }
            }
            return [String.lossy(utf8: bytes)]
        case .replace(let pattern, let content):
            return tokens.map { pattern.replace($0, with: content) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) {
                    out.append(s)
                } else {
                    out.append(contentsOf: repeatElement("\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for token in tokens {
                if let b = Self.byteToken(token) {
                    pending.append(b)
                } else {
                    flush()
                    out.append(token)
                }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                let chars = Array(token.unicodeScalars)
                var startCut = 0
                for (i, c) in chars.prefix(start).enumerated() {
                    if c == content { startCut = i + 1 } else { break }
                }
                var stopCut = chars.count
                var i = 0
                while i < stop, chars.count - i - 1 >= 0 {
                    let index = chars.count - i - 1
                    if chars[index] == content { stopCut = index } else { break }
                    i += 1
                }
                guard startCut < stopCut else { return "" }
                return String(scalars: chars[startCut..<stopCut])
            }
        case .metaspace(let replacement, let scheme):
            return tokens.enumerated().map { i, token in
                var view = String.UnicodeScalarView()
                for c in token.unicodeScalars {
                    if c == replacement {
                        if i == 0, scheme != .never { continue }
                        view.append(" ")
                    } else {
                        view.append(c)
                    }
                }
                return String(view)
            }
        case .bpe(let suffix):
            return tokens.enumerated().map { i, token in
                replaceLiteral(token, suffix, with: i == tokens.count - 1 ? "" : " ")
            }
        }
    }

    /// "<0xAB>" -> 0xAB (the ByteFallback decoder's test: 6 bytes, "<0x" prefix, ">" suffix).
    static func byteToken(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}

/// `tokenizer.json` "post_processor", reduced to what a single sequence needs.
indirect enum PostProcessor {
    case sequence([PostProcessor])
    case byteLevel
    /// TemplateProcessing "single": ids before and after the sequence.
    case template(prefix: [Int], suffix: [Int], prefixTokens: [String], suffixTokens: [String])

    static let supported = ["TemplateProcessing", "ByteLevel", "Sequence", "RobertaProcessing", "BertProcessing"]

    static func parse(_ node: JSONNode) throws -> PostProcessor {
        let type = try node.require("type").string()
        switch type {
        case "Sequence":
            return .sequence(try node.require("processors").array().map(parse))
        case "ByteLevel":
            return .byteLevel
        case "RobertaProcessing", "BertProcessing":
            func pair(_ key: String) throws -> (String, Int) {
                let n = try node.require(key)
                let items = try n.array()
                guard items.count == 2 else { throw n.invalid("expected [token, id]") }
                return (try items[0].string(), try items[1].int())
            }
            let cls = try pair("cls"), sep = try pair("sep")
            return .template(prefix: [cls.1], suffix: [sep.1], prefixTokens: [cls.0], suffixTokens: [sep.0])
        case "TemplateProcessing":
            let single = try node.require("single").array()
            let specials = node.child("special_tokens")
            var prefix: [Int] = [], suffix: [Int] = []
            var prefixTokens: [String] = [], suffixTokens: [String] = []
            var seenSequence = false
            for item in single {
                if let seq = item.child("Sequence") {
                    let id = try seq.optionalString("id") ?? "A"
                    guard id == "A" else { throw seq.invalid("the single-sequence template can only use $A") }
                    guard !seenSequence else { throw item.invalid("$A appears twice") }
                    seenSequence = true
                } else if let sp = item.child("SpecialToken") {
                    let name = try sp.require("id").string()
                    guard let entry = specials?.child(name) else {
                        throw TokenizerError.missingField(path: node.file,
                                                          field: node.path + ".special_tokens.\(name)")
                    }
                    let ids = try entry.require("ids").array().map { try $0.int() }
                    let toks = try entry.child("tokens")?.array().map { try $0.string() } ?? []
                    if seenSequence {
                        suffix += ids; suffixTokens += toks.isEmpty ? [name] : toks
                    } else {
                        prefix += ids; prefixTokens += toks.isEmpty ? [name] : toks
                    }
                } else {
                    throw item.invalid("expected {\"Sequence\": ...} or {\"SpecialToken\": ...}")
                }
            }
            return .template(prefix: prefix, suffix: suffix, prefixTokens: prefixTokens, suffixTokens: suffixTokens)
        default:
            throw TokenizerError.unsupported(path: node.file, field: node.path + ".type", value: type,
                                             supported: supported)
        }
    }

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        guard addSpecialTokens else { return ids }
        switch self {
        case .sequence(let list):
            var out = ids
            for p in list { out = p.process(out, addSpecialTokens: true) }
            return out
        case .byteLevel:
            return ids
        case .template(let prefix, let suffix, _, _):
            return prefix + ids + suffix
        }
    }

    /// The first special token placed before the sequence, and the last one placed after it.
    var boundaryIds: (bos: Int?, eos: Int?) {
        switch self {
        case .byteLevel: return (nil, nil)
        case .template(let prefix, let suffix, _, _): return (prefix.first, suffix.last)
        case .sequence(let list):
            var bos: Int?, eos: Int?
            for p in list {
                let b = p.boundaryIds
                bos = bos ?? b.bos
                eos = b.eos ?? eos
            }
            return (bos, eos)
        }
    }
}
