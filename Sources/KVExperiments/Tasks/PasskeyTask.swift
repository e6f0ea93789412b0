import Foundation

/// Passkey retrieval as in the Quest evaluation (TASKS.md): task line, filler, the needle line,
/// more filler, the question, joined with the style's line separator. The two filler parts hold
/// n words in all, split at depth: round(depth * n) (half up) before the needle. Both start at the
/// beginning of the built-in filler (Quest cuts both from the same repeated text); with a user
/// text file the second part continues where the first stopped.
enum PasskeyTask {
    static func make(_ spec: TaskSpec, index: Int, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let key = rng.int(in: 1...50_000)
        var sample = try build(key: key, depth: TaskFactory.depth(spec, index: index), context: spec.context, shared: shared)
        sample.maxNewTokens = shared.options.maxNewTokens ?? 10
        return sample
    }

    static func build(key: Int, depth: Double, context: Int, shared: TaskFactory.Shared) throws -> TaskSample {
        let style = shared.options.style, tok = shared.text
        let needle = style.passkeyNeedle.replacingOccurrences(of: "{key}", with: style.number(key))
        let hay = shared.fillerHaystack
        let cyclic = hay.limit == nil
        let sep = style.lineSeparator
        func render(_ n: Int) -> PromptText {
            let before = Int((depth * Double(n)).rounded()), after = n - before
            var p = PromptText()
            p.append(style.passkeyTask); p.append(sep)
            hay.render(from: 0, count: before, into: &p); p.append(sep)
            p.mark(0); p.append(needle); p.append(sep)
            hay.render(from: cyclic ? 0 : before, count: after, into: &p); p.append(sep)
            p.markQuestion(); p.appendQuestion(style.passkeyQuestion)
            return p
        }
        let (n, prompt) = try PromptFit.fit(target: context, limit: hay.limit, task: "passkey", render: render, tok)
        try PromptFit.checkFileLength(hay, used: n, tokens: prompt.total, target: context)
        return TaskSample(context: prompt.context, suffix: prompt.suffix, answers: [String(key)],
                          meta: ["depth": depth, "key": Double(key), "needle_position": Double(prompt.marks[0] ?? 0),
                                 "filler_words": Double(n), "spaced_digits": style.joinSpacedDigits ? 1 : 0])
    }
}

/// Needle in a haystack (TASKS.md, after LLMTest_NeedleInAHaystack): the style's needle sentence
/// at depth fraction x of the haystack's tokens, moved back to the previous sentence end; then a
/// blank line, the question and the answer prefix (each on its own line).
enum NeedleTask {
    static func make(_ spec: TaskSpec, index: Int, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let style = shared.options.style, tok = shared.text
        let depth = TaskFactory.depth(spec, index: index)
        let hay = shared.fillerHaystack
        let sep = style.lineSeparator
        func render(_ n: Int) -> PromptText {
            var p = PromptText()
            let b = hay.boundary(depth: depth, count: n, tok)
            hay.render(count: n, insertions: [(b, style.needle, 0)], into: &p)
            p.mark(1)
            p.append(sep); p.append(sep)
            p.markQuestion(); p.append(style.needleQuestion)
            if !style.needleAnswerPrefix.isEmpty { p.markAnswer(); p.append(sep); p.append(style.needleAnswerPrefix) }
            return p
        }
        let (n, prompt) = try PromptFit.fit(target: spec.context, limit: hay.limit, task: spec.kind.rawValue,
                                            render: render, tok)
        try PromptFit.checkFileLength(hay, used: n, tokens: prompt.total, target: spec.context)
        let position = prompt.marks[0] ?? 0
        // The needle's depth in tokens: its start over the haystack's tokens without it.
        let haystackTokens = (prompt.marks[1] ?? prompt.context.count) - max(0, tok.count(style.needle) - tok.emptyCount)
        return TaskSample(context: prompt.context, suffix: prompt.suffix,
                          maxNewTokens: shared.options.maxNewTokens ?? 30, answers: [style.needleAnswer],
                          meta: ["depth": depth, "needle_position": Double(position),
                                 "needle_depth": haystackTokens > 0 ? min(1, Double(position) / Double(haystackTokens)) : 0,
                                 "haystack_words": Double(n), "spaced_digits": style.joinSpacedDigits ? 1 : 0])
    }
}
