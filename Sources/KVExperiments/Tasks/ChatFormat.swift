import Foundation
import KVTokenizer

/// A task prompt in the model's chat template (`chat_template: true`): the prompt up to its answer
/// prefix becomes one user message, the template's generation prompt follows, then the answer
/// prefix, as RULER formats instruct models (its model template around the task, the answer prefix
/// after it). A template that changes the message content (other than what KVLab can keep
/// verbatim) is refused when the format is made, never rendered wrong.
public struct ChatFormat: Hashable, Sendable {
    /// Text before and after the user message (the system turn a template adds, role markers,
    /// the generation prompt).
    public let header: String
    public let footer: String

    /// The format of `template` (Jinja): rendered for one user message with the generation prompt.
    /// `bosToken`/`eosToken`: the texts the template may print (pass "" for a BOS the tokenizer
    /// adds itself, so that the prompt has one).
    public init(template: String, bosToken: String = "", eosToken: String = "") throws {
        let t = try ChatTemplate(template)
        func render(_ content: String) throws -> String {
            try t.render(messages: [.init(role: "user", content: content)], addGenerationPrompt: true,
                         bosToken: bosToken, eosToken: eosToken)
        }
        let sentinel = "\u{1}KVLAB-USER-MESSAGE\u{1}"
        let probe = try render(sentinel)
        guard let r = probe.range(of: sentinel) else {
            throw ChatTemplateError.failed("the template does not print the user message verbatim")
        }
        header = String(probe[..<r.lowerBound]); footer = String(probe[r.upperBound...])
        let sample = "Line one.\nLine  two: 12 345?"
        guard try render(sample) == header + sample + footer else {
            throw ChatTemplateError.failed("the template changes the user message (it renders differently from the message between its header and footer)")
        }
    }

    /// The prompt as a chat: header + the text before the answer mark (trailing whitespace dropped)
    /// + footer + the answer prefix (leading whitespace dropped); marks and the question start move
    /// with their text.
    func wrap(_ p: PromptText) -> PromptText {
        let utf8 = Array(p.text.utf8)
        let split = p.answerStart ?? utf8.count
        var userEnd = split
        while userEnd > 0, [9, 10, 13, 32].contains(utf8[userEnd - 1]) { userEnd -= 1 }
        var answerStart = split
        while answerStart < utf8.count, [9, 10, 13, 32].contains(utf8[answerStart]) { answerStart += 1 }
        let user = String(decoding: utf8[..<userEnd], as: UTF8.self)
        let answer = String(decoding: utf8[answerStart...], as: UTF8.self)
        var out = PromptText()
        out.text = header + user + footer + answer
        let h = header.utf8.count, shift = h + userEnd + footer.utf8.count - answerStart
        func move(_ o: Int) -> Int { o <= userEnd ? o + h : (o < answerStart ? h + userEnd + footer.utf8.count : o + shift) }
        out.questionStart = p.questionStart.map(move)
        out.marks = p.marks.mapValues(move)
        out.answerStart = p.answerStart.map { _ in h + userEnd + footer.utf8.count }
        return out
    }
}
