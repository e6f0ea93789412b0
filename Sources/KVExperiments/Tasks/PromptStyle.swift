import Foundation

/// How the text tasks word their prompts and write numbers: standard English (TASKS.md, the
/// default) or a style a model ships for itself (models/<name>/tasks.json), e.g. a small
/// word-level model whose tokenizer knows only its training vocabulary and reads numbers as
/// separate digits. Covers the passkey and needle prompts, the filler of every haystack and how
/// every number of a prompt (passkey, RULER values) is written.
public struct PromptStyle: Hashable, Sendable {
    /// How numbers are written in prompts.
    public enum Digits: String, Hashable, Sendable, CaseIterable {
        /// "12345".
        case plain
        /// "1 2 3 4 5": one digit per word, for tokenizers that read numbers digit by digit.
        case spaced
    }

    public var name: String
    /// Passkey: the instruction line before the filler.
    public var passkeyTask: String
    /// Filler sentences, repeated and cut to length (passkey, needle and RULER noise haystacks).
    public var filler: String
    /// Passkey needle line; "{key}" marks the key (each occurrence).
    public var passkeyNeedle: String
    /// Passkey question, the end of the prompt (the model continues it with the key).
    public var passkeyQuestion: String
    /// Needle-in-a-haystack: the sentence inserted, the question, the answer (scored) and the text
    /// that opens the answer (may be empty).
    public var needle: String
    public var needleQuestion: String
    public var needleAnswer: String
    public var needleAnswerPrefix: String
    /// Between the lines of a prompt.
    public var lineSeparator: String
    public var digits: Digits
    /// Scorers read "1 2 3" (digits separated by single spaces) in an output as the number 123.
    public var joinSpacedDigits: Bool
    /// A start token every prompt must begin with: prepended when the codec does not emit it
    /// (counted in the context length). nil = whatever the codec emits.
    public var bos: Int?

    public init(name: String = "standard",
                passkeyTask: String = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. I will quiz you about the important information there.",
                filler: String = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.",
                passkeyNeedle: String = "The pass key is {key}. Remember it. {key} is the pass key.",
                passkeyQuestion: String = "What is the pass key? The pass key is",
                needle: String = "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
                needleQuestion: String = "What is the best thing to do in San Francisco?",
                needleAnswer: String = "eat a sandwich and sit in Dolores Park on a sunny day",
                needleAnswerPrefix: String = "Answer: The best thing to do in San Francisco is",
                lineSeparator: String = "\n", digits: Digits = .plain, joinSpacedDigits: Bool? = nil,
                bos: Int? = nil) {
        self.name = name; self.passkeyTask = passkeyTask; self.filler = filler
        self.passkeyNeedle = passkeyNeedle; self.passkeyQuestion = passkeyQuestion
        self.needle = needle; self.needleQuestion = needleQuestion; self.needleAnswer = needleAnswer
        self.needleAnswerPrefix = needleAnswerPrefix; self.lineSeparator = lineSeparator
        self.digits = digits; self.joinSpacedDigits = joinSpacedDigits ?? (digits == .spaced)
        self.bos = bos
    }

    /// TASKS.md's English prompts, numbers written plainly.
    public static let standard = PromptStyle()

    /// A number as this style writes it in a prompt.
    public func number(_ value: Int) -> String { number(String(value)) }

    /// A digit string (or any text: only runs of digits change) as this style writes it.
    public func number(_ text: String) -> String {
        guard digits == .spaced else { return text }
        var out = "", previousDigit = false
        for ch in text {
            let isDigit = ch.isASCII && ch.isNumber
            if isDigit && previousDigit { out.append(" ") }
            out.append(ch); previousDigit = isDigit
        }
        return out
    }
}

// MARK: - Loading a model's style

extension PromptStyle {
    /// The style of a model folder: its tasks.json when present, else `.standard`.
    public static func forModel(directory: String) throws -> PromptStyle {
        let path = (directory as NSString).appendingPathComponent("tasks.json")
        guard FileManager.default.fileExists(atPath: path) else { return .standard }
        return try load(path: path)
    }

    /// Reads a style from a tasks.json. Every key is optional (missing keys keep the standard
    /// wording); snake_case or camelCase; other keys (e.g. "doc") are ignored:
    ///
    ///     { "name": "...", "digits": "spaced" | "plain", "join_spaced_digits": true,
    ///       "line_separator": "\n", "filler": "...", "bos": 1,
    ///       "passkey": { "task": "...", "filler": "...", "needle": "... {key} ...", "question": "..." },
    ///       "needle":  { "needle": "...", "question": "...", "answer": "...", "answer_prefix": "..." } }
    ///
    /// Templates may write the key as {key}, {K}, {pass_key} or {passkey}.
    public static func load(path: String) throws -> PromptStyle {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TaskError.unreadableTextFile(path: path, reason: error.localizedDescription)
        }
        let object: Any
        do { object = try JSONSerialization.jsonObject(with: data) } catch {
            throw TaskError.invalidStyle(path: path, reason: "not valid JSON (\(error.localizedDescription))")
        }
        guard let root = object as? [String: Any] else {
            throw TaskError.invalidStyle(path: path, reason: "the top level must be a JSON object")
        }
        return try PromptStyle(json: root, path: path)
    }

    init(json root: [String: Any], path: String) throws {
        var style = PromptStyle.standard
        func bad(_ reason: String) -> TaskError { TaskError.invalidStyle(path: path, reason: reason) }
        func string(_ dict: [String: Any], _ keys: [String]) throws -> String? {
            for key in keys {
                guard let value = dict[key] else { continue }
                if let s = value as? String { return s }
                if let lines = value as? [String] { return lines.joined(separator: " ") }
                throw bad("\"\(key)\" must be a string")
            }
            return nil
        }
        func section(_ keys: [String]) throws -> [String: Any] {
            for key in keys {
                guard let value = root[key] else { continue }
                guard let d = value as? [String: Any] else { throw bad("\"\(key)\" must be an object") }
                return d
            }
            return [:]
        }
        func template(_ s: String) -> String {
            var t = s
            for alias in ["{K}", "{pass_key}", "{passkey}", "{PASSKEY}", "{KEY}"] {
                t = t.replacingOccurrences(of: alias, with: "{key}")
            }
            return t
        }
        func flag(_ keys: [String]) throws -> Bool? {
            for key in keys {
                guard let value = root[key] else { continue }
                guard let b = value as? Bool else { throw bad("\"\(key)\" must be true or false") }
                return b
            }
            return nil
        }

        if let s = try string(root, ["name"]) { style.name = s }
        if let s = try string(root, ["line_separator", "lineSeparator"]) { style.lineSeparator = s }
        if let s = try string(root, ["filler"]) { style.filler = s }
        let passkey = try section(["passkey", "pass_key"])
        if let s = try string(passkey, ["task", "task_line", "taskLine"]) { style.passkeyTask = s }
        if let s = try string(passkey, ["filler"]) { style.filler = s }
        if let s = try string(passkey, ["needle"]) { style.passkeyNeedle = template(s) }
        if let s = try string(passkey, ["question"]) { style.passkeyQuestion = s }
        let needle = try section(["needle"])
        if let s = try string(needle, ["needle"]) { style.needle = s }
        if let s = try string(needle, ["question"]) { style.needleQuestion = s }
        if let s = try string(needle, ["answer"]) { style.needleAnswer = s }
        if let s = try string(needle, ["answer_prefix", "answerPrefix"]) { style.needleAnswerPrefix = s }

        if let s = try string(root, ["digits"]) {
            guard let d = Digits(rawValue: s.lowercased()) else {
                throw bad("\"digits\" must be \"plain\" or \"spaced\", not \"\(s)\"")
            }
            style.digits = d
        }
        style.joinSpacedDigits = try flag(["join_spaced_digits", "joinSpacedDigits"]) ?? (style.digits == .spaced)
        if let value = root["bos"] {
            guard let b = value as? Int, b >= 0 else { throw bad("\"bos\" must be a token id") }
            style.bos = b
        }
        guard style.passkeyNeedle.contains("{key}") else { throw bad("the passkey needle must contain {key}") }
        guard !style.filler.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw bad("the filler is empty") }
        self = style
    }
}
