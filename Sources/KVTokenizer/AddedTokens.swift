import Foundation

/// An entry of `tokenizer.json` "added_tokens".
struct AddedToken {
    let id: Int
    let content: String
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool
    let normalized: Bool
    let special: Bool
    /// What the token is matched against and decodes to: the content passed through
    /// the normalizer for `normalized` tokens (`tokenizers`' normalized cache).
    var form: String
}

/// A piece of the input after the added tokens have been cut out.
enum AddedSegment {
    case token(Int)
    /// Text between added tokens and its UTF-8 offset in the string that was split.
    case text(String, start: Int)
}

/// Finds added tokens in a string like `AddedVocabulary::find_matches`:
/// leftmost-longest matching over UTF-8 bytes, then single_word / lstrip / rstrip.
struct AddedTokenMatcher {
    private var tokens: [AddedToken] = []
    private var patterns: [[UInt8]] = []
    /// first byte -> pattern indices, longest first
    private var buckets: [[Int]] = Array(repeating: [], count: 256)

    var isEmpty: Bool { tokens.isEmpty }

    init(_ tokens: [AddedToken]) {
        for t in tokens {
            let p = Array(t.form.utf8)
            guard !p.isEmpty else { continue }
            self.tokens.append(t)
            patterns.append(p)
            buckets[Int(p[0])].append(patterns.count - 1)
        }
        for b in 0..<256 where buckets[b].count > 1 {
            // Longest first; among equal patterns (duplicates) the first one wins.
            buckets[b] = buckets[b].enumerated().sorted {
                patterns[$0.element].count != patterns[$1.element].count
                    ? patterns[$0.element].count > patterns[$1.element].count : $0.offset < $1.offset
            }.map(\.element)
        }
    }

    func split(_ text: String) -> [AddedSegment] {
        guard !tokens.isEmpty else { return text.isEmpty ? [] : [.text(text, start: 0)] }
        let t = Array(text.utf8)
        var out: [AddedSegment] = []
        var startOffset = 0
        var i = 0
        func emitText(_ a: Int, _ b: Int) {
            if a < b { out.append(.text(String(decoding: t[a..<b], as: UTF8.self), start: a)) }
        }
        while i < t.count {
            var found: Int? = nil
            for k in buckets[Int(t[i])] {
                let p = patterns[k]
                if i + p.count <= t.count, t[i..<(i + p.count)].elementsEqual(p) {
                    found = k
                    break
                }
            }
            guard let k = found else {
                i += 1
                continue
            }
            var start = i
            var stop = i + patterns[k].count
            i = stop  // the search resumes after the match even when it is discarded
            let token = tokens[k]
            if token.singleWord {
                let startSpace = start == 0 || !Self.isWord(Self.scalar(endingAt: start, in: t))
                let stopSpace = stop == t.count || !Self.isWord(Self.scalar(startingAt: stop, in: t))
                if !startSpace || !stopSpace { continue }
            }
            if token.lstrip {
                var s = start
                while s > 0, let c = Self.scalar(endingAt: s, in: t), CharClass.isWhitespace(c) {
                    s -= UTF8.width(c)
                }
                start = max(s, startOffset)
            }
            if token.rstrip {
                while stop < t.count, let c = Self.scalar(startingAt: stop, in: t), CharClass.isWhitespace(c) {
                    stop += UTF8.width(c)
                }
            }
            start = max(start, startOffset)
            emitText(startOffset, start)
            out.append(.token(token.id))
            startOffset = stop
        }
        emitText(startOffset, t.count)
        return out
    }

    private static func isWord(_ s: Unicode.Scalar?) -> Bool {
        guard let s = s else { return false }
        return CharClass.isWord(s)
    }

    private static func scalar(startingAt i: Int, in t: [UInt8]) -> Unicode.Scalar? {
        guard i < t.count else { return nil }
        var end = i + 1
        while end < t.count, t[end] & 0xC0 == 0x80 { end += 1 }
        return String(decoding: t[i..<end], as: UTF8.self).unicodeScalars.first
    }

    private static func scalar(endingAt i: Int, in t: [UInt8]) -> Unicode.Scalar? {
        guard i > 0 else { return nil }
        var start = i - 1
        while start > 0, t[start] & 0xC0 == 0x80 { start -= 1 }
        return String(decoding: t[start..<i], as: UTF8.self).unicodeScalars.first
    }
}
