import Foundation

/// Multi-query associative recall (Zoology's MQAR, token level, no tokenizer).
///
/// D key-value pairs k1 v1 k2 v2 ... (keys distinct from [4, V/2), values distinct from
/// [V/2, V); ids below 4 are left to special tokens), then a query part of L = context - 2D
/// tokens where each key appears once, in random order, at offsets floor(j * L / D); the other
/// query positions hold random non-key tokens from [4, V). Label: at a queried key's position,
/// its value (the logits there must predict it). D = options.mqarPairs, else
/// min(context / 4, V/2 - 4, V - V/2), so the queries take about half the sequence.
/// context = the pairs (prefilled and compressed); suffix = the query part (teacher-forced).
enum MQARTask {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let v = shared.vocabularySize, n = spec.context
        guard v >= 6 else { throw TaskError.vocabularyTooSmall(task: "mqar", vocabularySize: v, needed: 6) }
        guard n >= 3 else { throw TaskError.contextTooShort(task: "mqar", context: n, minimum: 3) }
        let half = v / 2
        let keyPool = half - 4, valuePool = v - half
        let d = shared.options.mqarPairs ?? max(1, min(n / 4, keyPool, valuePool))
        guard d >= 1, d <= keyPool, d <= valuePool else {
            throw TaskError.vocabularyTooSmall(task: "mqar", vocabularySize: v, needed: 2 * (d + 4))
        }
        guard 3 * d <= n else { throw TaskError.contextTooShort(task: "mqar", context: n, minimum: 3 * d) }
        let keys = rng.distinct(d, below: keyPool).map { 4 + $0 }
        let values = rng.distinct(d, below: valuePool).map { half + $0 }
        var context: [Int] = []
        context.reserveCapacity(2 * d)
        for i in 0..<d { context.append(keys[i]); context.append(values[i]) }

        let length = n - 2 * d
        var order = Array(0..<d)
        rng.shuffle(&order)
        let keySet = Set(keys)
        var suffix = [Int](repeating: 0, count: length)
        for i in 0..<length {
            var t = 4 + rng.int(below: v - 4)
            while keySet.contains(t) { t = 4 + rng.int(below: v - 4) }
            suffix[i] = t
        }
        var labels: [TaskSample.Label] = []
        for (j, pair) in order.enumerated() {
            let offset = j * length / d
            suffix[offset] = keys[pair]
            labels.append(.init(position: 2 * d + offset, token: values[pair]))
        }
        return TaskSample(context: context, suffix: suffix, labels: labels,
                          meta: ["pairs": Double(d), "queries": Double(d)])
    }
}

/// Fidelity and perplexity: a sequence of spec.context tokens, teacher-forced.
///
/// Tokens: fidelity draws uniform random ids from [4, V) (or reads the user's text file through
/// the codec); perplexity reads the user's text file, else the shipped sample text (seeded
/// sentences, `SampleText`). From a file, sample i is a window at a seeded offset, led by the
/// codec's start tokens (what it emits for "", e.g. BOS).
/// E = clamp(spec.evalTokens, 1, context - 1): context = the first context - E tokens, suffix =
/// the last E. Labels: (p, token p + 1) for p in context - E ..< context, where token `context`
/// is the one after the window (drawn or read, not fed), so every suffix position has a label.
enum SequenceTask {
    static func make(_ spec: TaskSpec, rng: inout TaskRNG, shared: TaskFactory.Shared) throws -> TaskSample {
        let n = spec.context
        guard n >= 2 else { throw TaskError.contextTooShort(task: spec.kind.rawValue, context: n, minimum: 2) }
        let e = min(max(spec.evalTokens, 1), n - 1)
        var meta: [String: Double] = ["eval_tokens": Double(e)]
        let tokens: [Int]                                  // n + 1
        if let fileTokens = shared.fileTokens, let path = spec.textFile {
            let start = shared.text.emptyPrefix(of: fileTokens)
            let lead = Array(fileTokens[..<start]), body = fileTokens[start...]
            let need = n + 1 - lead.count
            guard need <= body.count else {
                throw TaskError.textFileTooShort(path: path, tokens: fileTokens.count, needed: n + 1)
            }
            let offset = rng.int(below: body.count - need + 1)
            tokens = lead + body[(body.startIndex + offset)..<(body.startIndex + offset + need)]
            meta["offset"] = Double(offset)
        } else if spec.kind == .perplexity {
            tokens = try sampleText(tokens: n + 1, rng: &rng, shared.text)
        } else {
            let v = shared.vocabularySize
            guard v >= 5 else { throw TaskError.vocabularyTooSmall(task: spec.kind.rawValue, vocabularySize: v, needed: 5) }
            tokens = (0...n).map { _ in 4 + rng.int(below: v - 4) }
        }
        if spec.kind == .perplexity || spec.textFile != nil { try shared.text.check(tokens) }
        let labels = (n - e..<n).map { TaskSample.Label(position: $0, token: tokens[$0 + 1]) }
        return TaskSample(context: Array(tokens[..<(n - e)]), suffix: Array(tokens[(n - e)..<n]),
                          labels: labels, meta: meta)
    }

    /// The first `count` tokens of seeded sample text (sentences added until long enough).
    static func sampleText(tokens count: Int, rng: inout TaskRNG, _ tok: PromptTokenizer) throws -> [Int] {
        let base = rng.fork(0x7E47)
        var sentences = 16
        while true {
            var r = base
            let ids = tok.encode(SampleText.text(sentences: sentences, &r))
            if ids.count >= count { return Array(ids[..<count]) }
            if ids.count <= tok.emptyCount {
                throw TaskError.invalidSpec("task 'perplexity': the tokenizer produced no tokens for the sample text")
            }
            let perSentence = max(1.0, Double(ids.count) / Double(sentences))
            sentences = max(sentences * 2, Int(Double(count) / perSentence * 1.1) + 1)
        }
    }
}

extension PromptTokenizer {
    /// How many leading tokens of `ids` are the codec's start tokens (what it emits for "").
    func emptyPrefix(of ids: [Int]) -> Int {
        let lead = encode("")
        var i = 0
        while i < lead.count, i < ids.count, lead[i] == ids[i] { i += 1 }
        return i == lead.count ? i : 0
    }
}
