import Foundation

/// A regular expression written for Oniguruma (what `tokenizers` uses for Split,
/// Replace and the ByteLevel regex), run with ICU through NSRegularExpression.
///
/// The two engines agree on the syntax used by tokenizer.json files (alternation,
/// `(?i:...)`, `\p{L}`/`\p{N}` classes, `{m,n}`, lookahead such as `\s+(?!\S)`,
/// possessive quantifiers), except for a few shorthand classes, which are rewritten:
///
///   * `\s` / `\S`: Oniguruma matches the Unicode White_Space property (including
///     U+000B and U+0085); ICU documents `\s` as `[\t\n\f\r\p{Z}]`. Both become
///     `\p{White_Space}` / `\P{White_Space}` so the meaning does not depend on ICU.
///   * `\h` / `\H`: a hexadecimal digit in Oniguruma (Ruby syntax), horizontal
///     space in ICU. Both become `[0-9a-fA-F]` (or its negation).
///
/// Character properties come from the platform's ICU tables, so characters assigned
/// in Unicode versions newer than ICU's (or Oniguruma's) may be classified differently.
final class OnigRegex: @unchecked Sendable {
    let pattern: String
    let regex: NSRegularExpression
    /// Where the pattern was read (file and field), for errors.
    let origin: String

    init(pattern: String, origin: String = "tokenizer") throws {
        self.pattern = pattern
        self.origin = origin
        self.regex = try NSRegularExpression(pattern: OnigRegex.translate(pattern), options: [])
    }

    static func translate(_ pattern: String) -> String {
        var out = String.UnicodeScalarView()
        let scalars = Array(pattern.unicodeScalars)
        var i = 0
        var classDepth = 0
        func append(_ s: String) { out.append(contentsOf: s.unicodeScalars) }
        while i < scalars.count {
            let c = scalars[i]
            if c == "\\", i + 1 < scalars.count {
                let n = scalars[i + 1]
                switch n {
                case "s": append("\\p{White_Space}")
                case "S": append("\\P{White_Space}")
                case "h": append(classDepth > 0 ? "0-9a-fA-F" : "[0-9a-fA-F]")
                case "H" where classDepth == 0: append("[^0-9a-fA-F]")
                default:
                    out.append(c)
                    out.append(n)
                }
                i += 2
                continue
            }
            if c == "[" {
                classDepth += 1
                out.append(c)
                i += 1
                // A ']' right after '[' or '[^' is a literal.
                if i < scalars.count, scalars[i] == "^" { out.append("^"); i += 1 }
                if i < scalars.count, scalars[i] == "]" { append("\\]"); i += 1 }
                continue
            }
            if c == "]", classDepth > 0 { classDepth -= 1 }
            out.append(c)
            i += 1
        }
        return String(out)
    }

    /// Non-overlapping matches as UTF-16 ranges. The search's work is bounded (TokenizerWorkLimit):
    /// beyond it the search stops, the limit is reported, and the ranges found so far are returned.
    func matchRanges(in text: String, utf16Count: Int) -> [NSRange] {
        // After a failure in this scope the encode's result is discarded anyway: stop early.
        if TokenizerWorkLimit.scope?.failed == true { return [] }
        var ranges: [NSRange] = []
        var ticks = 0
        let limit = TokenizerWorkLimit.baseTicks + TokenizerWorkLimit.ticksPerCharacter * utf16Count
        var exceeded = false
        regex.enumerateMatches(in: text, options: [.reportProgress], range: NSRange(location: 0, length: utf16Count)) { m, _, stop in
            if let m { ranges.append(m.range); return }
            ticks += 1
            if ticks > limit { exceeded = true; stop.pointee = true }
        }
        if exceeded {
            TokenizerWorkLimit.exceeded(TokenizerWorkLimitError(origin: origin, pattern: pattern, inputLength: utf16Count))
        }
        return ranges
    }
}

/// How a pre-tokenizer split treats the matched delimiters (`SplitDelimiterBehavior`).
enum SplitBehavior: String {
    case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous

    static func parse(_ node: JSONNode) throws -> SplitBehavior {
        let raw = try node.string()
        switch raw.lowercased() {
        case "removed": return .removed
        case "isolated": return .isolated
        case "mergedwithprevious", "merged_with_previous": return .mergedWithPrevious
        case "mergedwithnext", "merged_with_next": return .mergedWithNext
        case "contiguous": return .contiguous
        default:
            throw TokenizerError.unsupported(path: node.file, field: node.path, value: raw,
                                             supported: ["Removed", "Isolated", "MergedWithPrevious",
                                                         "MergedWithNext", "Contiguous"])
        }
    }
}

/// One slice of a string produced by a pattern: its text, whether it matched, and
/// its UTF-8 start offset within the string that was split.
struct PatternSlice {
    var text: String
    var isMatch: Bool
    var start: Int
}

/// Something that finds delimiters in a string (`tokenizers::Pattern`).
enum TextPattern {
    /// An exact string (a Split/Replace `{"String": ...}` pattern).
    case literal(String)
    /// An Oniguruma regex (`{"Regex": ...}`).
    case regex(OnigRegex)
    /// Every scalar for which the predicate holds is a one-character match.
    case predicate((Unicode.Scalar) -> Bool)

    static func parse(_ node: JSONNode) throws -> TextPattern {
        if let s = node.child("String") { return .literal(try s.string()) }
        if let r = node.child("Regex") {
            let p = try r.string()
            do {
                return .regex(try OnigRegex(pattern: p, origin: "\(r.file): field \"\(r.path)\""))
            } catch {
                throw r.invalid("regular expression \(p.debugDescription) does not compile: \(error)")
            }
        }
        throw node.invalid("expected {\"String\": ...} or {\"Regex\": ...}")
    }

    /// The whole string cut into consecutive slices, each flagged as match or not
    /// (`Pattern::find_matches`). An empty string gives one empty non-match.
    func findMatches(_ text: String) -> [PatternSlice] {
        if text.isEmpty { return [PatternSlice(text: "", isMatch: false, start: 0)] }
        switch self {
        case .literal(let p):
            guard !p.isEmpty else { return [PatternSlice(text: text, isMatch: false, start: 0)] }
            let t = Array(text.utf8)
            let pb = Array(p.utf8)
            var out: [PatternSlice] = []
            var prev = 0
            var i = 0
            while i + pb.count <= t.count {
                if t[i] == pb[0], t[i..<(i + pb.count)].elementsEqual(pb) {
                    if prev < i { out.append(PatternSlice(text: String(decoding: t[prev..<i], as: UTF8.self), isMatch: false, start: prev)) }
                    out.append(PatternSlice(text: p, isMatch: true, start: i))
                    i += pb.count
                    prev = i
                } else {
                    i += 1
                }
            }
            if prev < t.count { out.append(PatternSlice(text: String(decoding: t[prev...], as: UTF8.self), isMatch: false, start: prev)) }
            return out
        case .regex(let re):
            let u16 = Array(text.utf16)
            let ranges = re.matchRanges(in: text, utf16Count: u16.count)
            if ranges.isEmpty { return [PatternSlice(text: text, isMatch: false, start: 0)] }
            var out: [PatternSlice] = []
            out.reserveCapacity(ranges.count * 2 + 1)
            var prev = 0
            var utf8Offset = 0
            func piece(_ a: Int, _ b: Int, _ match: Bool) {
                let s = String(decoding: u16[a..<b], as: UTF16.self)
                out.append(PatternSlice(text: s, isMatch: match, start: utf8Offset))
                utf8Offset += s.utf8.count
            }
            for r in ranges {
                let start = r.location, end = r.location + r.length
                if prev != start { piece(prev, start, false) }
                piece(start, end, true)
                prev = end
            }
            if prev != u16.count { piece(prev, u16.count, false) }
            return out
        case .predicate(let isDelimiter):
            var out: [PatternSlice] = []
            var current = String.UnicodeScalarView()
            var currentStart = 0
            var offset = 0
            for s in text.unicodeScalars {
                let len = UTF8.width(s)
                if isDelimiter(s) {
                    if !current.isEmpty {
                        out.append(PatternSlice(text: String(current), isMatch: false, start: currentStart))
                        current = String.UnicodeScalarView()
                    }
                    out.append(PatternSlice(text: String(s), isMatch: true, start: offset))
                    currentStart = offset + len
                } else {
                    current.append(s)
                }
                offset += len
            }
            if !current.isEmpty { out.append(PatternSlice(text: String(current), isMatch: false, start: currentStart)) }
            return out
        }
    }

    /// `NormalizedString::split`: apply the behavior and drop empty pieces. Each
    /// result carries the UTF-8 offset of its start within `text`.
    func split(_ text: String, behavior: SplitBehavior, invert: Bool = false) -> [(text: String, start: Int)] {
        var matches = findMatches(text)
        if invert {
            for i in matches.indices { matches[i].isMatch.toggle() }
        }
        var pieces: [(text: String, start: Int)] = []
        switch behavior {
        case .isolated:
            pieces = matches.map { ($0.text, $0.start) }
        case .removed:
            pieces = matches.filter { !$0.isMatch }.map { ($0.text, $0.start) }
        case .contiguous:
            var previousMatch = false
            for m in matches {
                if m.isMatch == previousMatch, !pieces.isEmpty {
                    pieces[pieces.count - 1].text += m.text
                } else {
                    pieces.append((m.text, m.start))
                }
                previousMatch = m.isMatch
            }
        case .mergedWithPrevious:
            var previousMatch = false
            for m in matches {
                if m.isMatch, !previousMatch, !pieces.isEmpty {
                    pieces[pieces.count - 1].text += m.text
                } else {
                    pieces.append((m.text, m.start))
                }
                previousMatch = m.isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            var reversed: [(text: String, start: Int)] = []
            for m in matches.reversed() {
                if m.isMatch, !previousMatch, !reversed.isEmpty {
                    reversed[reversed.count - 1].text = m.text + reversed[reversed.count - 1].text
                    reversed[reversed.count - 1].start = m.start
                } else {
                    reversed.append((m.text, m.start))
                }
                previousMatch = m.isMatch
            }
            pieces = reversed.reversed()
        }
        return pieces.filter { !$0.text.isEmpty }
    }

    /// Replace every match by `content` (`NormalizedString::replace`, Replace decoder).
    func replace(_ text: String, with content: String) -> String {
        if case .literal(let p) = self { return replaceLiteral(text, p, with: content) }
        var out = ""
        for m in findMatches(text) {
            out += m.isMatch ? content : m.text
        }
        return out
    }
}
