import Foundation

/// RULER's needle-in-a-haystack variants (Hsieh et al. 2024; NVIDIA/RULER scripts/data/synthetic/
/// niah.py and constants.py). Needle: "One of the special magic {numbers|uuids} for {key} is: {value}."
/// One value asked (single, multikey) uses RULER's singular template (niah.py:193-198: "A special
/// magic number is hidden ... What is the special magic number for ..."). The prompt plus the
/// generated tokens fit the context (niah.py:245: length = prompt + tokens_to_generate).
/// - niah_single: one needle, asked.
/// - niah_multikey: `needles` needles with distinct keys, the first drawn is asked.
/// - niah_multivalue: `needles` needles of one key, all values asked.
/// - niah_multiquery: `needles` needles with distinct keys, all asked.
/// Haystack: the style's filler ("noise", default), distractor needles with other keys and values
/// ("needles"), or the user's text file when the spec names one ("essay"). Each needle sits at a
/// random depth (the asked one at spec.depth when set), at a sentence boundary.
enum RulerNIAH {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let o = shared.options, style = o.style, tok = shared.text, sep = style.lineSeparator
        let count = max(1, o.needles)
        let keyCount = [.niahMultikey, .niahMultiquery].contains(spec.kind) ? count : 1
        let valuesPerKey = spec.kind == .niahMultivalue ? count : 1
        let asked = spec.kind == .niahMultiquery ? keyCount : 1
        let valueType = o.values == .uuids ? "uuids" : (o.values == .words ? "words" : "numbers")
        let singular = asked * valuesPerKey == 1
        let askedType = singular ? String(valueType.dropLast()) : valueType
        let maxNew = o.maxNewTokens ?? 128

        var used = Set<String>()
        func fresh(_ make: (inout TaskRNG) -> String) -> String {
            while true { let s = make(&rng); if used.insert(s).inserted { return s } }
        }
        let keys = (0..<keyCount).map { _ in fresh { item(o.keys, isKey: true, &$0) } }
        var needles: [(key: String, value: String)] = []
        for key in keys { for _ in 0..<valuesPerKey { needles.append((key, fresh { item(o.values, isKey: false, &$0) })) } }
        let depths: [Double] = needles.indices.map { i in
            let d = rng.unit()
            return i == 0 ? (spec.depth.map { min(max($0, 0), 1) } ?? d) : d
        }
        let sentence = { (key: String, value: String) in
            "One of the special magic \(valueType) for \(style.number(key)) is: \(style.number(value))."
        }
        let hay: Haystack
        if let file = shared.fileHaystack { hay = file } else if o.haystack == .needles {
            let base = rng.fork(0xD157_AC70)
            hay = Haystack.sentences { j in
                var r = base.fork(UInt64(j))
                var key = item(o.keys, isKey: true, &r)
                while used.contains(key) { key = item(o.keys, isKey: true, &r) }
                return sentence(key, item(o.values, isKey: false, &r))
            }
        } else { hay = Haystack.filler(style.filler) }

        let queried = Array(keys.prefix(asked)).map { style.number($0) }
        let query = queried.count == 1 ? queried[0]
            : queried.dropLast().joined(separator: ", ") + ", and " + queried.last!
        let answers = needles.filter { keys.prefix(asked).contains($0.key) }.map(\.value)
        func render(_ n: Int) -> PromptText {
            var p = PromptText()
            p.append(singular
                     ? "A special magic \(askedType) is hidden within the following text. Make sure to memorize it. I will quiz you about the \(askedType) afterwards."
                     : "Some special magic \(askedType) are hidden within the following text. Make sure to memorize it. I will quiz you about the \(askedType) afterwards.")
            p.append(sep)
            let ins = needles.indices.map { i in (hay.boundary(depth: depths[i], count: n, tok), sentence(needles[i].key, needles[i].value), i) }
            hay.render(count: n, insertions: ins, into: &p)
            p.append(sep)
            p.markQuestion()
            p.appendQuestion(singular
                     ? "What is the special magic \(askedType) for \(query) mentioned in the provided text? The special magic \(askedType) for \(query) mentioned in the provided text is"
                     : "What are all the special magic \(askedType) for \(query) mentioned in the provided text? The special magic \(askedType) for \(query) mentioned in the provided text are")
            return p
        }
        let (n, prompt) = try RulerFit.fit(spec, generated: maxNew, limit: hay.limit, render: render, tok)
        try PromptFit.checkFileLength(hay, used: n, tokens: prompt.total, target: spec.context - maxNew)
        var meta: [String: Double] = ["needles": Double(needles.count), "haystack_units": Double(n),
                                      "spaced_digits": style.joinSpacedDigits ? 1 : 0,
                                      "depth": depths[0], "needle_position": Double(prompt.marks[0] ?? 0)]
        for i in needles.indices {
            meta["depth_\(i)"] = depths[i]
            meta["needle_position_\(i)"] = Double(prompt.marks[i] ?? 0)
        }
        return TaskSample(context: prompt.context, suffix: prompt.suffix,
                          maxNewTokens: maxNew, answers: answers, meta: meta)
    }

    /// A key or value of the given type (canonical form; prompts write numbers per the style).
    static func item(_ type: TaskOptions.Item, isKey: Bool, _ rng: inout TaskRNG) -> String {
        switch type {
        case .words: return isKey ? SampleText.wordKey(&rng) : rng.pick(SampleText.nouns)
        case .numbers: return String(rng.int(in: 1_000_000...9_999_999))
        case .uuids: return rng.uuid()
        }
    }
}

/// RULER variable tracking (variable_tracking.py): a chain "VAR AAAAA = 12345.", "VAR BBBBB = VAR
/// AAAAA.", ... of hops + 1 five-letter names, each statement a sentence at a random depth (in chain
/// order) of the filler (or the user's text); asked: all names holding the value. As RULER, the
/// prompt opens with a one-shot example (variable_tracking.py:191-265, 303-307: a complete prompt of
/// about 500 tokens with three-letter names, then its answer) and the generated tokens count in the
/// length. Other differences: docs/tasks.md.
enum VariableTrackingTask {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let o = shared.options, style = o.style, tok = shared.text
        let chain = max(1, o.hops) + 1, maxNew = o.maxNewTokens ?? 30
        var exampleRNG = rng.fork(0x1C1_E8A3)
        let example = try exampleText(spec, chain: chain, rng: &exampleRNG, shared: shared)
        let names = VariableChain.names(chain, letters: 5, &rng)
        let value = rng.int(in: 10_000...99_999)
        let depths = (0..<chain).map { _ in rng.unit() }.sorted()
        func render(_ n: Int) -> PromptText {
            var p = PromptText()
            p.append(example)
            VariableChain.render(names: names, value: value, depths: depths, fillers: n, style: style, hay: shared.fillerHaystack,
                                 tok, into: &p, markQuestion: true)
            return p
        }
        let hay = shared.fillerHaystack
        let (n, prompt) = try RulerFit.fit(spec, generated: maxNew, limit: hay.limit, render: render, tok)
        try PromptFit.checkFileLength(hay, used: n, tokens: prompt.total, target: spec.context - maxNew)
        var meta: [String: Double] = ["value": Double(value), "hops": Double(chain - 1), "haystack_units": Double(n),
                                      "spaced_digits": style.joinSpacedDigits ? 1 : 0,
                                      "example_tokens": Double(tok.count(example))]
        for i in 0..<chain { meta["needle_position_\(i)"] = Double(prompt.marks[i] ?? 0) }
        return TaskSample(context: prompt.context, suffix: prompt.suffix,
                          maxNewTokens: maxNew, answers: names, meta: meta)
    }

    /// The one-shot example with its answer and the two line breaks after it: a prompt of at most
    /// 500 tokens (a quarter of the context below 2,000 tokens), three-letter names.
    static func exampleText(_ spec: TaskSpec, chain: Int, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> String {
        let style = shared.options.style, tok = shared.text
        let names = VariableChain.names(chain, letters: 3, &rng)
        let value = rng.int(in: 10_000...99_999)
        let depths = (0..<chain).map { _ in rng.unit() }.sorted()
        let hay = Haystack.filler(style.filler)
        func render(_ n: Int) -> PromptText {
            var p = PromptText()
            VariableChain.render(names: names, value: value, depths: depths, fillers: n, style: style, hay: hay, tok,
                                 into: &p, markQuestion: false)
            return p
        }
        let budget = min(500, spec.context / 4)
        guard let n = try PromptFit.search(target: budget, limit: nil, task: spec.kind.rawValue, count: { tok.count(render($0).text) }) else {
            throw TaskError.contextTooShort(task: spec.kind.rawValue, context: spec.context,
                                            minimum: 4 * tok.count(render(0).text))
        }
        return render(n).text + " " + names.joined(separator: " ") + "\n\n"
    }
}

/// The statements and prompt of one variable-tracking chain (the task and its example).
enum VariableChain {
    static func names(_ count: Int, letters: Int, _ rng: inout TaskRNG) -> [String] {
        var names: [String] = [], seen = Set<String>()
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        while names.count < count {
            let name = String((0..<letters).map { _ in alphabet[rng.int(below: 26)] })
            if seen.insert(name).inserted { names.append(name) }
        }
        return names
    }

    /// RULER's template (constants.py:33-34), with the answer prefix's trailing space.
    static func render(names: [String], value: Int, depths: [Double], fillers n: Int, style: PromptStyle, hay: Haystack,
                       _ tok: PromptTokenizer, into p: inout PromptText, markQuestion: Bool) {
        let sep = style.lineSeparator
        let statements = names.indices.map { i in
            i == 0 ? "VAR \(names[0]) = \(style.number(value))." : "VAR \(names[i]) = VAR \(names[i - 1])."
        }
        p.append("Memorize and track the chain(s) of variable assignment hidden in the following text.")
        p.append(sep + sep)
        let ins = statements.indices.map { i in (hay.boundary(depth: depths[i], count: n, tok), statements[i], markQuestion ? i : 100 + i) }
        hay.render(count: n, insertions: ins, into: &p)
        p.append(sep)
        if markQuestion { p.markQuestion() }
        p.append("Question: Find all variables that are assigned the value \(style.number(value)) in the text above.")
        if markQuestion { p.markAnswer() }
        p.append(" Answer: According to the chain(s) of variable assignment in the text above, \(style.number(names.count)) variables are assigned the value \(style.number(value)), they are: ")
    }
}

/// RULER common words extraction (common_words_extraction.py): a numbered list "1. word 2. word ..."
/// where `commonWords` words appear `commonFrequency` times each and as many rarer words as fit
/// appear `rareFrequency` times each, shuffled; asked: the common words. As RULER: frequencies 6/1
/// below a context of 4096 tokens and 30/3 from 4096 on (:102-111), a one-shot example first (20
/// words 3/1, or 40 words 10/3, with its answer), the generated tokens counted in the length. When
/// the context cannot hold the common words at full frequency, their frequency drops (never below
/// rareFrequency + 1).
enum CommonWordsTask {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let o = shared.options, style = o.style, tok = shared.text
        let long = spec.context >= 4096
        let cw = max(1, o.commonWords), rare = max(1, o.rareFrequency ?? (long ? 3 : 1))
        let maxCommon = max(rare + 1, o.commonFrequency ?? (long ? 30 : 6))
        let maxNew = o.maxNewTokens ?? 120
        var pool = SampleText.wordPool
        rng.shuffle(&pool)
        let real = Set(pool)
        var nextPseudo = 0
        func word(_ i: Int) -> String {
            while pool.count <= i {
                let w = SampleText.pseudoWord(nextPseudo); nextPseudo += 1
                if !real.contains(w) { pool.append(w) }
            }
            return pool[i]
        }
        // The example's words: its own draw from the pool (RULER samples them independently).
        var exampleRNG = rng.fork(0xE7A3_91E)
        var examplePool = SampleText.wordPool
        exampleRNG.shuffle(&examplePool)
        let exampleWords = Array(examplePool.prefix(long ? 40 : 20))
        var exampleList: [String] = []
        for w in exampleWords.prefix(cw) { exampleList += Array(repeating: w, count: long ? 10 : 3) }
        for w in exampleWords.dropFirst(cw) { exampleList += Array(repeating: w, count: long ? 3 : 1) }
        exampleRNG.shuffle(&exampleList)
        var examplePrompt = PromptText()
        renderList(exampleList, common: cw, style: style, into: &examplePrompt, markQuestion: false)
        let example = examplePrompt.text + " " + exampleWords.prefix(cw).enumerated().map { "\(style.number($0 + 1)). \($1)" }
            .joined(separator: " ") + "\n"

        let common = (0..<cw).map(word)
        let shuffleBase = rng.fork(0xC0_3303)
        func render(commonFrequency c: Int, rareWords u: Int) -> PromptText {
            var list: [String] = []
            for w in common { list += Array(repeating: w, count: c) }
            for i in 0..<u { list += Array(repeating: word(cw + i), count: rare) }
            var r = shuffleBase.fork(UInt64(u) << 16 | UInt64(c))
            r.shuffle(&list)
            var p = PromptText()
            p.append(example)
            renderList(list, common: cw, style: style, into: &p, markQuestion: true)
            return p
        }
        // The common words' frequency first (as high as fits, up to commonFrequency), then rare words.
        let target = spec.context - maxNew
        func commonCount(_ extra: Int) -> Int { tok.count(render(commonFrequency: rare + 1 + extra, rareWords: 0).text) }
        guard target > 0, let extra = try PromptFit.search(target: target, limit: maxCommon - rare - 1, task: spec.kind.rawValue,
                                                           count: commonCount) else {
            throw TaskError.contextTooShort(task: spec.kind.rawValue, context: spec.context, minimum: commonCount(0) + maxNew)
        }
        let c = rare + 1 + extra
        let (u, prompt) = try RulerFit.fit(spec, generated: maxNew, limit: nil,
                                           render: { render(commonFrequency: c, rareWords: $0) }, tok)
        return TaskSample(context: prompt.context, suffix: prompt.suffix, maxNewTokens: maxNew,
                          answers: common,
                          meta: ["common_words": Double(cw), "common_frequency": Double(c), "rare_words": Double(u),
                                 "rare_frequency": Double(rare), "spaced_digits": style.joinSpacedDigits ? 1 : 0,
                                 "example_tokens": Double(tok.count(example))])
    }

    /// RULER's template (constants.py:39-40) around "1. w 2. w ...".
    static func renderList(_ list: [String], common cw: Int, style: PromptStyle, into p: inout PromptText, markQuestion: Bool) {
        let sep = style.lineSeparator
        p.append("Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.")
        p.append(sep)
        p.append(list.enumerated().map { "\(style.number($0 + 1)). \($1)" }.joined(separator: " "))
        p.append(sep)
        if markQuestion { p.markQuestion() }
        let question = "Question: What are the \(style.number(cw)) most common words in the above list? Answer: The top \(style.number(cw)) words that appear most often in the list are:"
        if markQuestion { p.appendQuestion(question) } else { p.append(question) }
    }
}

/// RULER counts the generated tokens in a sample's length (niah.py:245, variable_tracking.py:268,
/// common_words_extraction.py:179): the prompt fits `context - generated` tokens.
enum RulerFit {
    static func fit(_ spec: TaskSpec, generated: Int, limit: Int?, render: (Int) -> PromptText,
                    _ tok: PromptTokenizer) throws -> (n: Int, prompt: TokenizedPrompt) {
        let target = spec.context - generated
        do {
            guard target > 0 else { throw TaskError.contextTooShort(task: spec.kind.rawValue, context: target, minimum: tok.count(render(0).text)) }
            return try PromptFit.fit(target: target, limit: limit, task: spec.kind.rawValue, render: render, tok)
        } catch TaskError.contextTooShort(let task, _, let minimum) {
            throw TaskError.contextTooShort(task: task, context: spec.context, minimum: minimum + generated)
        }
    }
}
