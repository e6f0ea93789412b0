import Foundation

/// RULER's needle-in-a-haystack variants (Hsieh et al. 2024, synthetic.yaml templates).
/// Needle: "One of the special magic {numbers|uuids} for {key} is: {value}."
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
            p.append("Some special magic \(valueType) are hidden within the following text. Make sure to memorize it. I will quiz you about the \(valueType) afterwards.")
            p.append(sep)
            let ins = needles.indices.map { i in (hay.boundary(depth: depths[i], count: n, tok), sentence(needles[i].key, needles[i].value), i) }
            hay.render(count: n, insertions: ins, into: &p)
            p.append(sep)
            p.markQuestion()
            p.append("What are all the special magic \(valueType) for \(query) mentioned in the provided text? The special magic \(valueType) for \(query) mentioned in the provided text are")
            return p
        }
        let (n, prompt) = try PromptFit.fit(target: spec.context, limit: hay.limit, task: spec.kind.rawValue,
                                            render: render, tok)
        try PromptFit.checkFileLength(hay, used: n, tokens: prompt.total, target: spec.context)
        var meta: [String: Double] = ["needles": Double(needles.count), "haystack_units": Double(n),
                                      "spaced_digits": style.joinSpacedDigits ? 1 : 0,
                                      "depth": depths[0], "needle_position": Double(prompt.marks[0] ?? 0)]
        for i in needles.indices {
            meta["depth_\(i)"] = depths[i]
            meta["needle_position_\(i)"] = Double(prompt.marks[i] ?? 0)
        }
        return TaskSample(context: prompt.context, suffix: prompt.suffix,
                          maxNewTokens: o.maxNewTokens ?? 128, answers: answers, meta: meta)
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

/// RULER variable tracking: a chain "VAR AAAAA = 12345.", "VAR BBBBB = VAR AAAAA.", ... of
/// hops + 1 five-letter names, each statement a sentence at a random depth (in chain order) of the
/// filler (or the user's text); asked: all names holding the value.
enum VariableTrackingTask {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let o = shared.options, style = o.style, tok = shared.text, sep = style.lineSeparator
        let chain = max(1, o.hops) + 1
        var names: [String] = [], seen = Set<String>()
        let letters = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        while names.count < chain {
            let name = String((0..<5).map { _ in letters[rng.int(below: 26)] })
            if seen.insert(name).inserted { names.append(name) }
        }
        let value = rng.int(in: 10_000...99_999)
        let depths = (0..<chain).map { _ in rng.unit() }.sorted()
        let statements = names.indices.map { i in
            i == 0 ? "VAR \(names[0]) = \(style.number(value))." : "VAR \(names[i]) = VAR \(names[i - 1])."
        }
        let hay = shared.fillerHaystack
        func render(_ n: Int) -> PromptText {
            var p = PromptText()
            p.append("Memorize and track the chain(s) of variable assignment hidden in the following text.")
            p.append(sep)
            let ins = statements.indices.map { i in (hay.boundary(depth: depths[i], count: n, tok), statements[i], i) }
            hay.render(count: n, insertions: ins, into: &p)
            p.append(sep)
            p.markQuestion()
            p.append("Question: Find all variables that are assigned the value \(style.number(value)) in the text above.")
            p.append(" Answer: According to the chain(s) of variable assignment in the text above, \(style.number(chain)) variables are assigned the value \(style.number(value)), they are:")
            return p
        }
        let (n, prompt) = try PromptFit.fit(target: spec.context, limit: hay.limit, task: spec.kind.rawValue,
                                            render: render, tok)
        try PromptFit.checkFileLength(hay, used: n, tokens: prompt.total, target: spec.context)
        var meta: [String: Double] = ["value": Double(value), "hops": Double(chain - 1), "haystack_units": Double(n),
                                      "spaced_digits": style.joinSpacedDigits ? 1 : 0]
        for i in 0..<chain { meta["needle_position_\(i)"] = Double(prompt.marks[i] ?? 0) }
        return TaskSample(context: prompt.context, suffix: prompt.suffix,
                          maxNewTokens: o.maxNewTokens ?? 30, answers: names, meta: meta)
    }
}

/// RULER common words extraction: a numbered list ("1. word") where `commonWords` words appear
/// `commonFrequency` times each and as many rarer words as fit appear `rareFrequency` times each,
/// shuffled; asked: the common words. When the context cannot hold the common words at full
/// frequency, their frequency drops (never below rareFrequency + 1).
enum CommonWordsTask {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let o = shared.options, style = o.style, tok = shared.text, sep = style.lineSeparator
        let cw = max(1, o.commonWords), rare = max(1, o.rareFrequency)
        let maxCommon = max(rare + 1, o.commonFrequency)
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
        let common = (0..<cw).map(word)
        let shuffleBase = rng.fork(0xC0_3303)
        func render(commonFrequency c: Int, rareWords u: Int) -> PromptText {
            var list: [String] = []
            for w in common { list += Array(repeating: w, count: c) }
            for i in 0..<u { list += Array(repeating: word(cw + i), count: rare) }
            var r = shuffleBase.fork(UInt64(u) << 16 | UInt64(c))
            r.shuffle(&list)
            var p = PromptText()
            p.append("Below is a numbered list of words. In these words, some appear more often than others. Memorize the ones that appear most often.")
            for (i, w) in list.enumerated() { p.append(sep); p.append("\(style.number(i + 1)). \(w)") }
            p.append(sep)
            p.markQuestion()
            p.append("Question: What are the \(style.number(cw)) most common words in the above list? Answer: The top \(style.number(cw)) words that appear most often in the list are:")
            return p
        }
        // The common words' frequency first (as high as fits, up to commonFrequency), then rare words.
        func commonCount(_ extra: Int) -> Int { tok.count(render(commonFrequency: rare + 1 + extra, rareWords: 0).text) }
        guard let extra = try PromptFit.search(target: spec.context, limit: maxCommon - rare - 1, task: spec.kind.rawValue,
                                               count: commonCount) else {
            throw TaskError.contextTooShort(task: spec.kind.rawValue, context: spec.context, minimum: commonCount(0))
        }
        let c = rare + 1 + extra
        let (u, prompt) = try PromptFit.fit(target: spec.context, limit: nil,
                                            task: spec.kind.rawValue, render: { render(commonFrequency: c, rareWords: $0) }, tok)
        return TaskSample(context: prompt.context, suffix: prompt.suffix, maxNewTokens: o.maxNewTokens ?? 120,
                          answers: common,
                          meta: ["common_words": Double(cw), "common_frequency": Double(c), "rare_words": Double(u),
                                 "rare_frequency": Double(rare), "spaced_digits": style.joinSpacedDigits ? 1 : 0])
    }
}
