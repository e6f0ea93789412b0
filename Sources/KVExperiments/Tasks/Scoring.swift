import Foundation

/// A generation task's scores: `score`, the primary one in [0, 1] (what the run averages), and
/// optional extra named scores (e.g. "rouge1_f" for the needle task).
public struct TaskScores: Sendable, Equatable {
    public var score: Double
    public var extra: [String: Double]
    public init(score: Double, extra: [String: Double] = [:]) { self.score = score; self.extra = extra }
}

/// The answer scorers of the generation tasks. Every score is a fraction in [0, 1]; RULER reports
/// string_match_all x 100, which the runner does when it reports percentages.
/// When a sample's meta has spaced_digits = 1 (its prompt style reads numbers digit by digit),
/// digits separated by single spaces in the output count as one number ("12 345" = 12345).
public enum TaskScoring {
    public static func scores(_ kind: TaskKind, output: String, sample: TaskSample) -> TaskScores? {
        let spaced = (sample.meta["spaced_digits"] ?? 0) != 0
        switch kind {
        case .fidelity, .perplexity, .mqar: return nil
        case .passkey:
            guard let expected = sample.answers.first else { return TaskScores(score: 0) }
            return TaskScores(score: passkey(output, key: expected, joinSpacedDigits: spaced))
        case .needle:
            guard let answer = sample.answers.first else { return TaskScores(score: 0) }
            let text = spaced ? joinSpacedDigits(output) : output
            let contained = text.lowercased().contains(answer.lowercased()) ? 1.0 : 0.0
            return TaskScores(score: contained, extra: ["rouge1_f": rouge1F(text, answer)])
        case .niahSingle, .niahMultikey, .niahMultivalue, .niahMultiquery, .variableTracking, .commonWords:
            return TaskScores(score: stringMatchAll(output, references: sample.answers, joinSpacedDigits: spaced))
        }
    }

    /// 1 when the first integer in the output equals the key (numerically), else 0.
    public static func passkey(_ output: String, key: String, joinSpacedDigits: Bool) -> Double {
        guard let found = firstInteger(output, joinSpacedDigits: joinSpacedDigits),
              let expected = Int(key.filter(\.isNumber)) else { return 0 }
        return Int(found) == expected ? 1 : 0
    }

    /// The first run of ASCII digits in `text`, as written ("007" stays "007"); with
    /// joinSpacedDigits, digits separated by single spaces continue the run ("12 345" -> "12345").
    public static func firstInteger(_ text: String, joinSpacedDigits: Bool) -> String? {
        let chars = Array(text)
        var i = 0
        while i < chars.count, !isDigit(chars[i]) { i += 1 }
        guard i < chars.count else { return nil }
        var digits = ""
        while i < chars.count {
            if isDigit(chars[i]) { digits.append(chars[i]); i += 1 }
            else if joinSpacedDigits, chars[i] == " ", i + 1 < chars.count, isDigit(chars[i + 1]) { i += 1 }
            else { break }
        }
        return digits
    }

    /// RULER's string_match_all: the share of references found in the output (case-insensitive
    /// substring), in [0, 1]; 0 without references.
    public static func stringMatchAll(_ output: String, references: [String], joinSpacedDigits: Bool = false) -> Double {
        guard !references.isEmpty else { return 0 }
        let text = (joinSpacedDigits ? Self.joinSpacedDigits(output) : output).lowercased()
        let found = references.filter { text.contains($0.lowercased()) }.count
        return Double(found) / Double(references.count)
    }

    /// ROUGE-1 F1 as Google's rouge-score computes it without stemming: lower-case, every
    /// character outside [a-z0-9] a separator, unigram overlap counted with multiplicity;
    /// precision = overlap / candidate tokens, recall = overlap / reference tokens,
    /// F = 2PR / (P + R); 0 when either side has no tokens or nothing overlaps.
    public static func rouge1F(_ candidate: String, _ reference: String) -> Double {
        let c = rougeTokens(candidate), r = rougeTokens(reference)
        guard !c.isEmpty, !r.isEmpty else { return 0 }
        var counts: [String: Int] = [:]
        for t in r { counts[t, default: 0] += 1 }
        var overlap = 0
        for t in c where (counts[t] ?? 0) > 0 { counts[t]! -= 1; overlap += 1 }
        guard overlap > 0 else { return 0 }
        let p = Double(overlap) / Double(c.count), rc = Double(overlap) / Double(r.count)
        return 2 * p * rc / (p + rc)
    }

    static func rougeTokens(_ text: String) -> [String] {
        var tokens: [String] = [], current = ""
        for ch in text.lowercased() {
            if ch.isASCII, ch.isLetter || ch.isNumber { current.append(ch) }
            else if !current.isEmpty { tokens.append(current); current = "" }
        }
        if !current.isEmpty { tokens.append(current) }
        return tokens
    }

    /// "1 2 3 4 5" -> "12345": removes single spaces between two digits.
    public static func joinSpacedDigits(_ text: String) -> String {
        let chars = Array(text)
        var out = ""
        for (i, ch) in chars.enumerated() {
            if ch == " ", i > 0, i + 1 < chars.count, isDigit(chars[i - 1]), isDigit(chars[i + 1]) { continue }
            out.append(ch)
        }
        return out
    }

    static func isDigit(_ ch: Character) -> Bool { ch.isASCII && ch.isNumber }
}
