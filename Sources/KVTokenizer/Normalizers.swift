import Foundation

/// `tokenizer.json` "normalizer".
indirect enum Normalizer {
    case sequence([Normalizer])
    case prepend(String)
    case replace(TextPattern, String)
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case strip(left: Bool, right: Bool)
    case stripAccents
    case byteLevel

    static let supported = ["Sequence", "Prepend", "Replace", "NFC", "NFD", "NFKC", "NFKD",
                            "Lowercase", "Strip", "StripAccents", "ByteLevel"]

    static func parse(_ node: JSONNode) throws -> Normalizer {
        if case .array = node.value {  // a bare list is read as a Sequence
            return .sequence(try node.array().map(parse))
        }
        let type = try node.require("type").string()
        switch type {
        case "Sequence":
            return .sequence(try node.require("normalizers").array().map(parse))
        case "Prepend":
            return .prepend(try node.require("prepend").string())
        case "Replace":
            return .replace(try TextPattern.parse(node.require("pattern")), try node.require("content").string())
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "Strip":
            return .strip(left: try node.optionalBool("strip_left") ?? true,
                          right: try node.optionalBool("strip_right") ?? true)
        case "StripAccents": return .stripAccents
        case "ByteLevel": return .byteLevel
        default:
            throw TokenizerError.unsupported(path: node.file, field: node.path + ".type", value: type,
                                             supported: supported)
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .sequence(let list):
            var s = text
            for n in list { s = n.normalize(s) }
            return s
        case .prepend(let p):
            return text.isEmpty ? text : p + text
        case .replace(let pattern, let content):
            return pattern.replace(text, with: content)
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase:
            // Rust `char::to_lowercase`, scalar by scalar (no context-dependent rules).
            var view = String.UnicodeScalarView()
            for s in text.unicodeScalars {
                if s.value < 0x80 {
                    view.append((0x41...0x5A).contains(s.value) ? Unicode.Scalar(s.value + 32)! : s)
                } else {
                    view.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars)
                }
            }
            return String(view)
        case .strip(let left, let right):
            var scalars = Array(text.unicodeScalars)
            if right { while let last = scalars.last, CharClass.isWhitespace(last) { scalars.removeLast() } }
            if left {
                let n = scalars.prefix(while: CharClass.isWhitespace).count
                scalars.removeFirst(n)
            }
            return String(scalars: scalars)
        case .stripAccents:
            return String(scalars: text.unicodeScalars.filter { !CharClass.isCombiningMark($0) })
        case .byteLevel:
            return ByteLevelTable.encode(text)
        }
    }
}
