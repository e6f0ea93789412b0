import Foundation

// Text helpers. Everything here works on Unicode scalars and UTF-8 bytes, never on
// Swift `Character`s (grapheme clusters) and never with `String ==` (canonical
// equivalence): the `tokenizers` library compares and slices bytes, so "e\u{301}"
// and "é" are different tokens and " \u{301}" still starts with a space.

/// A dictionary key that compares strings by their UTF-8 bytes.
struct TokenKey: Hashable {
    let string: String

    init(_ string: String) { self.string = string }

    static func == (a: TokenKey, b: TokenKey) -> Bool {
        a.string.utf8.elementsEqual(b.string.utf8)
    }

    func hash(into hasher: inout Hasher) {
        let done: Void? = string.utf8.withContiguousStorageIfAvailable { buffer in
            hasher.combine(bytes: UnsafeRawBufferPointer(buffer))
        }
        if done == nil {
            for b in string.utf8 { hasher.combine(b) }
        }
    }
}

extension String {
    /// Byte-wise prefix test (`str::starts_with`).
    func bytesHavePrefix(_ prefix: String) -> Bool {
        var it = utf8.makeIterator()
        for b in prefix.utf8 {
            guard let c = it.next(), c == b else { return false }
        }
        return true
    }

    /// Decode UTF-8, replacing every maximal invalid subsequence by U+FFFD
    /// (the same policy as Rust's `String::from_utf8_lossy`).
    static func lossy<C: Collection>(utf8 bytes: C) -> String where C.Element == UInt8 {
        String(decoding: bytes, as: UTF8.self)
    }

    init<S: Sequence>(scalars: S) where S.Element == Unicode.Scalar {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        self = String(view)
    }
}

/// Replace every non-overlapping occurrence of `pattern` in `text` (byte-wise) by `content`.
func replaceLiteral(_ text: String, _ pattern: String, with content: String) -> String {
    let p = Array(pattern.utf8)
    guard !p.isEmpty else { return text }
    let t = Array(text.utf8)
    guard t.count >= p.count else { return text }
    var out: [UInt8] = []
    out.reserveCapacity(t.count)
    var i = 0
    var changed = false
    let c = Array(content.utf8)
    while i < t.count {
        if t[i] == p[0], i + p.count <= t.count, t[i..<(i + p.count)].elementsEqual(p) {
            out.append(contentsOf: c)
            i += p.count
            changed = true
        } else {
            out.append(t[i])
            i += 1
        }
    }
    return changed ? String(decoding: out, as: UTF8.self) : text
}

enum CharClass {
    /// Rust `char::is_whitespace` / regex `\s`: the Unicode White_Space property.
    @inline(__always)
    static func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return s.value == 0x20 || (0x09...0x0D).contains(s.value) }
        return s.properties.isWhitespace
    }

    /// Rust `char::is_numeric`: general category Nd, Nl or No.
    static func isNumeric(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 { return (0x30...0x39).contains(s.value) }
        switch s.properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Rust `char::is_ascii_punctuation() || is_punctuation()` (general category P*).
    static func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 {
            let v = s.value
            return (0x21...0x2F).contains(v) || (0x3A...0x40).contains(v) || (0x5B...0x60).contains(v)
                || (0x7B...0x7E).contains(v)
        }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    /// Rust `regex` crate `\w` (UTS #18 word character): Alphabetic, Mark, Nd, Pc, Join_Control.
    static func isWord(_ s: Unicode.Scalar) -> Bool {
        if s.value < 0x80 {
            let v = s.value
            return (0x30...0x39).contains(v) || (0x41...0x5A).contains(v) || (0x61...0x7A).contains(v) || v == 0x5F
        }
        let p = s.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        switch p.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// `unicode_normalization::char::is_combining_mark` (General_Category = Mark).
    static func isCombiningMark(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark: return true
        default: return false
        }
    }
}

/// The GPT-2 byte <-> unicode-character table used by the ByteLevel components.
enum ByteLevelTable {
    /// byte -> the printable scalar that stands for it.
    static let byteToScalar: [Unicode.Scalar] = {
        var bs: [Int] = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var cs = bs
        var n = 0
        for b in 0...255 where !bs.contains(b) {
            bs.append(b)
            cs.append(256 + n)
            n += 1
        }
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        for (b, c) in zip(bs, cs) { table[b] = Unicode.Scalar(UInt32(c))! }
        return table
    }()

    /// scalar value -> byte, for the 256 scalars above.
    static let scalarToByte: [UInt32: UInt8] = {
        var map: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { map[s.value] = UInt8(b) }
        return map
    }()

    /// Map every UTF-8 byte of `text` to its stand-in scalar.
    static func encode(_ text: String) -> String {
        var view = String.UnicodeScalarView()
        for b in text.utf8 { view.append(byteToScalar[Int(b)]) }
        return String(view)
    }
}
