import Foundation

/// The model's codec as task generation uses it: encoding, a per-word token count cache, checks.
final class PromptTokenizer {
    let codec: TextCodec
    let vocabularySize: Int
    let task: String
    /// The style's start token, prepended when the codec does not emit it.
    let bos: Int?
    /// The chat template prompts are wrapped in (`chat_template: true`), nil = raw prompts.
    var chat: ChatFormat?
    /// Tokens emitted for "" (a BOS, say): not part of any word.
    private(set) var emptyCount = 0
    private var wordCounts: [String: Int] = [:]

    init(_ codec: TextCodec, vocabularySize: Int, task: String, bos: Int? = nil) {
        self.codec = codec; self.vocabularySize = vocabularySize; self.task = task; self.bos = bos
        emptyCount = encode("").count
    }

    func encode(_ text: String) -> [Int] {
        let ids = codec.encode(text)
        if let b = bos, ids.first != b { return [b] + ids }
        return ids
    }
    func count(_ text: String) -> Int { encode(text).count }

    /// Tokens of one word alone (approximate inside running text; used to place needles by depth).
    func wordCount(_ word: String) -> Int {
        if let c = wordCounts[word] { return c }
        let c = max(0, encode(word).count - emptyCount)
        wordCounts[word] = c
        return c
    }

    /// Throws when an id is outside the model's vocabulary (when the vocabulary size is known).
    func check(_ ids: [Int]) throws {
        guard vocabularySize > 0 else { return }
        if let bad = ids.first(where: { $0 < 0 || $0 >= vocabularySize }) {
            throw TaskError.tokenOutOfRange(task: task, token: bad, vocabularySize: vocabularySize)
        }
    }
}

/// A prompt being rendered: its text, where the question starts and where marked parts (needles)
/// start, as UTF-8 offsets.
struct PromptText {
    var text = ""
    var questionStart: Int?
    /// Where the answer prefix starts (what follows the user message under a chat template).
    var answerStart: Int?
    var marks: [Int: Int] = [:]

    mutating func append(_ s: String) { text += s }
    mutating func mark(_ id: Int) { marks[id] = text.utf8.count }
    mutating func markQuestion() { questionStart = text.utf8.count }
    mutating func markAnswer() { answerStart = text.utf8.count }

    /// Appends a question that ends with its answer prefix ("What is the pass key? The pass key
    /// is"), marking where the prefix starts: after the last "?" that text follows.
    mutating func appendQuestion(_ q: String) {
        guard let r = q.range(of: "?", options: .backwards), r.upperBound < q.endIndex else { append(q); return }
        append(String(q[..<r.upperBound])); markAnswer(); append(String(q[r.upperBound...]))
    }

    func prefix(utf8 offset: Int) -> String {
        String(text[..<text.utf8.index(text.utf8.startIndex, offsetBy: offset)])
    }
}

/// A rendered, tokenized prompt: context (up to the question), suffix (the question) and the
/// token index where each marked part starts.
struct TokenizedPrompt {
    var context: [Int]
    var suffix: [Int]
    var marks: [Int: Int]
    var total: Int { context.count + suffix.count }
}

enum PromptFit {
    /// Tokenizes the whole prompt once and splits it where the question starts. The split and the
    /// marked positions are the common prefix of the whole prompt's tokens with the tokens of the
    /// text before that point, so a codec that adds BOS/EOS or merges across a boundary still
    /// gives a context + suffix equal to the whole prompt's tokens.
    static func tokenize(_ prompt: PromptText, _ tok: PromptTokenizer) throws -> TokenizedPrompt {
        let full = tok.encode(prompt.text)
        try tok.check(full)
        func position(_ offset: Int) -> Int {
            let head = tok.encode(prompt.prefix(utf8: offset))
            var i = 0
            while i < head.count, i < full.count, head[i] == full[i] { i += 1 }
            return i
        }
        let split = prompt.questionStart.map(position) ?? full.count
        return TokenizedPrompt(context: Array(full[..<split]), suffix: Array(full[split...]),
                               marks: prompt.marks.mapValues(position))
    }

    /// Fits a prompt whose length grows with n (filler pieces, distractors, list words): the
    /// largest n whose whole prompt is at most `target` tokens, then tokenizes it.
    static func fit(target: Int, limit: Int?, task: String, render: (Int) -> PromptText,
                    _ tok: PromptTokenizer) throws -> (n: Int, prompt: TokenizedPrompt) {
        func rendered(_ n: Int) -> PromptText { tok.chat.map { $0.wrap(render(n)) } ?? render(n) }
        func count(_ n: Int) -> Int { tok.count(rendered(n).text) }
        guard let n = try search(target: target, limit: limit, task: task, count: count) else {
            throw TaskError.contextTooShort(task: task, context: target, minimum: count(0))
        }
        return (n, try tokenize(rendered(n), tok))
    }

    /// The largest n in 0...limit with count(n) <= target, for count increasing in n; nil when
    /// count(0) > target. Secant steps on the measured tokens per unit (a handful of calls when
    /// the count is near linear, as it is), then galloping and bisection for the rest.
    ///
    /// Bounded: every unit (a word, a sentence) gives at least one token with any real tokenizer,
    /// so an n beyond `maxUnits(target)` that still fits means the tokenizer drops the text (an
    /// empty vocabulary, no unknown token): an error, not an endless search (issue 16).
    static func search(target: Int, limit: Int?, task: String = "task", count: (Int) -> Int) throws -> Int? {
        let cap = maxUnits(target)
        let limit = limit.map { min($0, cap) } ?? cap
        let c0 = count(0)
        guard c0 <= target else { return nil }
        if limit == 0 { return 0 }
        var lo = 0, loCount = c0
        var hi: Int? = nil
        var guess = min(limit, 64)
        for _ in 0..<8 {
            let upper = min((hi ?? Int.max) - 1, limit)
            guess = max(lo + 1, min(guess, upper))
            guard guess <= upper else { return lo }
            let c = count(guess)
            let rate = max(Double(c - loCount) / Double(guess - lo), 1e-3)
            if c <= target { lo = guess; loCount = c } else { hi = guess }
            if let h = hi, h - lo <= 1 { return lo }
            if lo == limit {
                if lo >= cap { throw tokenizerDropsText(task: task, units: lo, tokens: loCount, target: target) }
                return lo
            }
            guess = lo + max(1, Int(Double(target - loCount) / rate))
        }
        var step = max(1, lo / 16)
        while hi == nil {
            if lo >= limit {
                if lo >= cap { throw tokenizerDropsText(task: task, units: lo, tokens: count(lo), target: target) }
                return lo
            }
            let next = min(lo + step, limit)
            if count(next) <= target { lo = next; step *= 2 } else { hi = next }
        }
        var h = hi!
        while h - lo > 1 {
            let mid = lo + (h - lo) / 2
            if count(mid) <= target { lo = mid } else { h = mid }
        }
        return lo
    }
}

/// Text that needles are hidden in, as pieces (words, or whole distractor sentences) with the
/// whitespace that follows each; needles go at sentence boundaries.
final class Haystack {
    struct Piece {
        var text: String
        var separator: String
        var endsSentence: Bool
    }
    private enum Source {
        case cycle([Piece])
        case finite([Piece])
        case generated((Int) -> String)
    }
    private let source: Source
    /// The file it came from (for errors), nil for built-in text.
    let path: String?
    private var generatedPieces: [Piece] = []

    private init(_ source: Source, path: String?) { self.source = source; self.path = path }

    /// Filler words repeated without end; repetitions joined with a space (as Quest does).
    static func filler(_ text: String) -> Haystack {
        var pieces = words(text)
        if let last = pieces.indices.last, pieces[last].separator.isEmpty { pieces[last].separator = " " }
        return Haystack(.cycle(pieces), path: nil)
    }

    /// A user's text, its words in order with their original whitespace.
    static func file(_ text: String, path: String) -> Haystack { Haystack(.finite(words(text)), path: path) }

    /// Whole sentences made on demand (e.g. distractor needles): sentence i = make(i).
    static func sentences(_ make: @escaping (Int) -> String) -> Haystack { Haystack(.generated(make), path: nil) }

    /// How many pieces there are; nil = unbounded.
    var limit: Int? { if case let .finite(p) = source { return p.count }; return nil }

    func piece(_ i: Int) -> Piece {
        switch source {
        case let .cycle(p): return p[i % p.count]
        case let .finite(p): return p[i]
        case let .generated(make):
            while generatedPieces.count <= i {
                generatedPieces.append(Piece(text: make(generatedPieces.count), separator: " ", endsSentence: true))
            }
            return generatedPieces[i]
        }
    }

    /// Pieces start ..< start + count, with insertions (text, mark id) before piece `boundary`
    /// (boundary == count: after the last one), in the order given for equal boundaries.
    func render(from start: Int = 0, count: Int, insertions: [(boundary: Int, text: String, id: Int)] = [],
                into out: inout PromptText) {
        let ins = insertions.enumerated().sorted { ($0.element.boundary, $0.offset) < ($1.element.boundary, $1.offset) }
            .map(\.element)
        var k = 0, wrote = false
        for i in 0..<count {
            while k < ins.count, ins[k].boundary <= i {
                out.mark(ins[k].id); out.append(ins[k].text); out.append(" "); k += 1
            }
            let p = piece(start + i)
            out.append(p.text); wrote = true
            if i < count - 1 { out.append(p.separator) }
        }
        while k < ins.count {
            if wrote { out.append(" ") }
            out.mark(ins[k].id); out.append(ins[k].text); wrote = true; k += 1
        }
    }

    /// The sentence boundary at depth fraction `depth` of the first `count` pieces, measured in
    /// tokens (each word tokenized alone): the last boundary whose token count is at most depth x
    /// the haystack's tokens, i.e. the needle moves back to the previous sentence end (boundary 0,
    /// the very start, counts).
    func boundary(depth: Double, count: Int, _ tok: PromptTokenizer) -> Int {
        var cum = [Int](repeating: 0, count: count + 1)
        for i in 0..<count { cum[i + 1] = cum[i] + tok.wordCount(piece(i).text) }
        let target = depth * Double(cum[count])
        var best = 0
        for b in 1...max(1, count) where b <= count && piece(b - 1).endsSentence {
            if Double(cum[b]) <= target + 1e-9 { best = b } else { break }
        }
        return best
    }

    /// Splits text into words, each with the whitespace after it. A word ends a sentence when it
    /// ends with . ! or ? (before closing quotes or brackets) or a line break follows it.
    static func words(_ text: String) -> [Piece] {
        var pieces: [Piece] = []
        var word = "", space = ""
        func flush() {
            guard !word.isEmpty else { space = ""; return }
            let core = word.trimmingCharacters(in: CharacterSet(charactersIn: "\"'”’)]»"))
            let ends = core.last.map { ".!?".contains($0) } ?? false
            pieces.append(Piece(text: word, separator: space, endsSentence: ends || space.contains("\n")))
            word = ""; space = ""
        }
        for ch in text {
            if ch.isWhitespace { space.append(ch) } else {
                if !space.isEmpty { flush() }
                word.append(ch)
            }
        }
        flush()
        return pieces
    }
}

extension PromptFit {
    /// The most filler units a prompt of `target` tokens can need (64 per token, plus slack).
    static func maxUnits(_ target: Int) -> Int { 64 * max(target, 0) + 1024 }

    static func tokenizerDropsText(task: String, units: Int, tokens: Int, target: Int) -> TaskError {
        .invalidSpec("task '\(task)': \(units) units of filler text came out as only \(tokens) tokens (target \(target)): " +
                     "the tokenizer drops text (an empty vocabulary, or no unknown token?)")
    }

    /// A user's file that ran out before the prompt reached its target length: an error naming
    /// the file. Tolerated: a shortfall of max(16, 1%) tokens.
    static func checkFileLength(_ hay: Haystack, used: Int, tokens: Int, target: Int) throws {
        guard let limit = hay.limit, let path = hay.path, used >= limit else { return }
        if tokens < target - max(16, target / 100) {
            throw TaskError.textFileTooShort(path: path, tokens: tokens, needed: target)
        }
    }
}
