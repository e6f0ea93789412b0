import Foundation
import KVTensor

/// Builds the samples of a task spec (../shared/TASKS.md) and scores their answers.
///
/// Sample `i` of a spec depends on (spec.seed, i) and the spec's other fields only (never on the
/// other samples), so `sample(spec, index: i, ...)` regenerates one sample alone and a run can be
/// reproduced from its config. Text tasks render a prompt, tokenize it with the model's codec and
/// fit their filler so that context + suffix is as close to `spec.context` tokens as the filler's
/// granularity (one word, or one distractor sentence) allows, never over it.
public enum TaskFactory {
    /// All samples of a spec.
    public static func samples(_ spec: TaskSpec, codec: TextCodec?, vocabularySize: Int,
                               options: TaskOptions = TaskOptions(), modelName: String? = nil) throws -> [TaskSample] {
        guard spec.samples >= 0 else { throw TaskError.invalidSpec("samples must be >= 0, got \(spec.samples)") }
        let shared = try Shared(spec, codec: codec, vocabularySize: vocabularySize, options: options, modelName: modelName)
        return try (0..<spec.samples).map { try generate(spec, index: $0, shared: shared) }
    }

    /// Sample `index` of a spec alone (the same as `samples(spec, ...)[index]`).
    public static func sample(_ spec: TaskSpec, index: Int, codec: TextCodec?, vocabularySize: Int,
                              options: TaskOptions = TaskOptions(), modelName: String? = nil) throws -> TaskSample {
        guard index >= 0 else { throw TaskError.invalidSpec("sample index must be >= 0, got \(index)") }
        let shared = try Shared(spec, codec: codec, vocabularySize: vocabularySize, options: options, modelName: modelName)
        return try generate(spec, index: index, shared: shared)
    }

    /// The seed of sample `index`: SplitMix64 of `seed`, forked by the index. Depends on nothing else.
    public static func sampleSeed(_ seed: UInt64, index: Int) -> UInt64 {
        var r = SeededRandom(seed: seed).fork(UInt64(index) &+ 1)
        return r.next()
    }

    /// The needle depth of sample `index`: `spec.depth` when set, else spread evenly over the
    /// samples with both ends included, depth_i = i / (samples - 1) (0.5 for a single sample);
    /// this is the grid linspace(0, 1, samples) of the needle heatmap.
    public static func depth(_ spec: TaskSpec, index: Int) -> Double {
        if let d = spec.depth { return min(max(d, 0), 1) }
        guard spec.samples > 1 else { return 0.5 }
        return min(max(Double(index) / Double(spec.samples - 1), 0), 1)
    }

    /// The scorer of a generation task's decoded output (primary score in [0, 1]); nil for the
    /// teacher-forced tasks (fidelity, perplexity, mqar), which the runner scores from logits.
    public static func scorer(for kind: TaskKind) -> AnswerScorer? {
        guard !kind.isTeacherForced else { return nil }
        return { output, sample in TaskScoring.scores(kind, output: output, sample: sample)?.score ?? 0 }
    }

    /// Primary and extra scores of a generation task's output (nil for teacher-forced tasks).
    public static func scores(for kind: TaskKind, output: String, sample: TaskSample) -> TaskScores? {
        TaskScoring.scores(kind, output: output, sample: sample)
    }

    /// ROUGE-1 F1 between a candidate and a reference (see `TaskScoring.rouge1F`).
    public static func rouge1F(_ candidate: String, _ reference: String) -> Double {
        TaskScoring.rouge1F(candidate, reference)
    }

    // MARK: - Dispatch

    /// What every sample of a spec shares: the checked codec, the options, the user's text file
    /// (read once) and its haystack (built once, with its token-count cache).
    final class Shared {
        let spec: TaskSpec
        let options: TaskOptions
        let vocabularySize: Int
        let tokenizer: PromptTokenizer?
        /// The user's haystack / corpus text (spec.textFile), nil when none or unused (mqar).
        let fileText: String?
        private var fileHaystackCache: Haystack?

        init(_ spec: TaskSpec, codec: TextCodec?, vocabularySize: Int, options: TaskOptions, modelName: String?) throws {
            self.spec = spec; self.options = options; self.vocabularySize = vocabularySize
            guard spec.context > 0 else {
                throw TaskError.invalidSpec("task '\(spec.kind.rawValue)': context must be > 0 tokens, got \(spec.context)")
            }
            let needsCodec = spec.kind.needsTokenizer || (spec.kind == .fidelity && spec.textFile != nil)
            if needsCodec && codec == nil {
                throw TaskError.needsTokenizer(task: spec.kind.rawValue, model: modelName,
                                               reason: spec.kind.needsTokenizer ? nil : "a text file")
            }
            tokenizer = codec.map { PromptTokenizer($0, vocabularySize: vocabularySize, task: spec.kind.rawValue,
                                                    bos: options.style.bos) }
            tokenizer?.chat = options.chat
            fileText = spec.kind == .mqar ? nil : try spec.textFile.map(TextFile.read)
            if spec.kind.needsTokenizer && fileText == nil && Haystack.words(options.style.filler).isEmpty {
                throw TaskError.invalidSpec("prompt style '\(options.style.name)' has an empty filler")
            }
            guard (1...256).contains(options.needles), (1...256).contains(options.hops) else {
                throw TaskError.invalidSpec("task options: needles and hops must be in 1...256")
            }
        }

        /// The codec; only called by text tasks (checked in init).
        var text: PromptTokenizer { tokenizer! }

        /// The user's file as a haystack of words, when one was given.
        var fileHaystack: Haystack? {
            if let h = fileHaystackCache { return h }
            guard let text = fileText, let path = spec.textFile else { return nil }
            let h = Haystack.file(text, path: path)
            fileHaystackCache = h
            return h
        }

        private var fileTokensCache: [Int]?
        /// The user's file through the codec, whole (fidelity and perplexity windows).
        var fileTokens: [Int]? {
            if let t = fileTokensCache { return t }
            guard let text = fileText, let tok = tokenizer else { return nil }
            let t = tok.encode(text)
            fileTokensCache = t
            return t
        }

        /// The haystack of filler-based tasks: the user's file, else the style's filler repeated.
        var fillerHaystack: Haystack { fileHaystack ?? Haystack.filler(options.style.filler) }
    }

    static func generate(_ spec: TaskSpec, index: Int, shared: Shared) throws -> TaskSample {
        var rng = TaskRNG(seed: sampleSeed(spec.seed, index: index))
        switch spec.kind {
        case .passkey: return try PasskeyTask.make(spec, index: index, rng: &rng, shared: shared)
        case .needle: return try NeedleTask.make(spec, index: index, rng: &rng, shared: shared)
        case .niahSingle, .niahMultikey, .niahMultivalue, .niahMultiquery:
            return try RulerNIAH.make(spec, rng: &rng, shared: shared)
        case .variableTracking: return try VariableTrackingTask.make(spec, rng: &rng, shared: shared)
        case .commonWords: return try CommonWordsTask.make(spec, rng: &rng, shared: shared)
        case .mqar: return try MQARTask.make(spec, rng: &rng, shared: shared)
        case .fidelity, .perplexity: return try SequenceTask.make(spec, rng: &rng, shared: shared)
        }
    }
}

/// Task parameters beyond `TaskSpec` (what a config may set per task); defaults follow RULER and
/// TASKS.md.
public struct TaskOptions: Hashable, Sendable {
    /// What RULER needles are hidden in.
    public enum Haystack: String, Hashable, Sendable, CaseIterable {
        /// The repeated filler sentences (RULER "noise"); a spec.textFile replaces them ("essay").
        case noise
        /// Distractor needles with other keys and values (RULER "needle").
        case needles
    }
    /// What RULER keys and values are.
    public enum Item: String, Hashable, Sendable, CaseIterable {
        /// "adjective-noun" (keys only).
        case words
        /// 7-digit numbers.
        case numbers
        /// Random UUIDs.
        case uuids
    }

    /// Prompt wording and number writing (the model's tasks.json, or standard English).
    public var style: PromptStyle
    public var haystack: Haystack
    public var keys: Item
    public var values: Item
    /// Needles of niah_multikey (1 asked), values of niah_multivalue, keys of niah_multiquery.
    public var needles: Int
    /// variable_tracking: hops after the first assignment (names in the chain = hops + 1).
    public var hops: Int
    /// common_words: words to find, their repetitions, and the repetitions of the rarer words;
    /// nil = RULER's per length (common_words_extraction.py:102-111): 6 and 1 below a context of
    /// 4096 tokens, 30 and 3 from 4096 on.
    public var commonWords: Int
    public var commonFrequency: Int?
    public var rareFrequency: Int?
    /// mqar: key-value pairs; nil = min(context / 4, vocabulary half).
    public var mqarPairs: Int?
    /// Overrides the task's greedy decode length.
    public var maxNewTokens: Int?
    /// Wraps text prompts in the model's chat template (nil: raw prompts).
    public var chat: ChatFormat?

    public init(style: PromptStyle = .standard, haystack: Haystack = .noise, keys: Item = .words,
                values: Item = .numbers, needles: Int = 4, hops: Int = 4, commonWords: Int = 10,
                commonFrequency: Int? = nil, rareFrequency: Int? = nil, mqarPairs: Int? = nil, maxNewTokens: Int? = nil,
                chat: ChatFormat? = nil) {
        self.style = style; self.haystack = haystack; self.keys = keys; self.values = values
        self.needles = needles; self.hops = hops; self.commonWords = commonWords
        self.commonFrequency = commonFrequency; self.rareFrequency = rareFrequency
        self.mqarPairs = mqarPairs; self.maxNewTokens = maxNewTokens; self.chat = chat
    }
}

/// Why a task could not be generated.
public enum TaskError: Error, Equatable, CustomStringConvertible, LocalizedError {
    /// A text task (or fidelity over a text file) without the model's tokenizer.
    case needsTokenizer(task: String, model: String?, reason: String?)
    /// The prompt's fixed parts (instructions, needles, question) exceed the context.
    case contextTooShort(task: String, context: Int, minimum: Int)
    case unreadableTextFile(path: String, reason: String)
    case textFileTooShort(path: String, tokens: Int, needed: Int)
    case vocabularyTooSmall(task: String, vocabularySize: Int, needed: Int)
    /// The codec produced an id the model does not have (tokenizer and model mismatch).
    case tokenOutOfRange(task: String, token: Int, vocabularySize: Int)
    case invalidStyle(path: String, reason: String)
    case invalidSpec(String)

    public var description: String {
        switch self {
        case let .needsTokenizer(task, model, reason):
            let what = reason.map { " (for \($0))" } ?? ""
            return "task '\(task)' needs a tokenizer\(what); model \(model ?? "(unnamed)") has none"
        case let .contextTooShort(task, context, minimum):
            return "task '\(task)' needs a context of at least \(minimum) tokens; got \(context)"
        case let .unreadableTextFile(path, reason): return "cannot read text file '\(path)': \(reason)"
        case let .textFileTooShort(path, tokens, needed):
            return "text file '\(path)' is too short: \(tokens) tokens, the task needs about \(needed)"
        case let .vocabularyTooSmall(task, size, needed):
            return "task '\(task)' needs a vocabulary of at least \(needed) tokens; the model has \(size)"
        case let .tokenOutOfRange(task, token, size):
            return "task '\(task)': the tokenizer produced id \(token), outside the model's vocabulary of \(size)"
        case let .invalidStyle(path, reason): return "prompt style '\(path)': \(reason)"
        case let .invalidSpec(message): return message
        }
    }
    public var errorDescription: String? { description }
}

/// Reading a user's text file (haystack or corpus).
enum TextFile {
    static func read(_ path: String) throws -> String {
        if RealText.isCorpus(path) {
            do { return try RealText.load(path).text } catch { throw TaskError.unreadableTextFile(path: path, reason: error.localizedDescription) }
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TaskError.unreadableTextFile(path: path, reason: "no such file")
        }
        guard !isDirectory.boolValue else { throw TaskError.unreadableTextFile(path: path, reason: "it is a directory") }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw TaskError.unreadableTextFile(path: path, reason: error.localizedDescription)
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TaskError.unreadableTextFile(path: path, reason: "not UTF-8 text")
        }
        guard !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw TaskError.textFileTooShort(path: path, tokens: 0, needed: 1)
        }
        return text
    }
}
