import Foundation

/// Text <-> token ids, for tasks rendered as text (a tokenizer.json behind it).
public protocol TextCodec {
    func encode(_ text: String) -> [Int]
    func decode(_ ids: [Int]) -> String
    /// The model's chat template (Jinja) when it ships one.
    var chatTemplate: String? { get }
    /// The texts of the BOS and EOS tokens (what a chat template prints for `bos_token`/`eos_token`).
    var bosText: String { get }
    var eosText: String { get }
}

extension TextCodec {
    public var chatTemplate: String? { nil }
    public var bosText: String { "" }
    public var eosText: String { "" }
}

/// The evaluation tasks of ../shared/TASKS.md.
public enum TaskKind: String, CaseIterable, Sendable, Codable {
    case fidelity, perplexity, passkey, needle
    case niahSingle = "niah_single", niahMultikey = "niah_multikey"
    case niahMultivalue = "niah_multivalue", niahMultiquery = "niah_multiquery"
    case variableTracking = "variable_tracking", commonWords = "common_words"
    case mqar

    /// Tasks whose prompts are text and need the model's tokenizer.
    public var needsTokenizer: Bool { ![.fidelity, .mqar].contains(self) }
    /// Teacher-forced tasks score logits at labelled positions; the others greedy-decode an answer.
    public var isTeacherForced: Bool { [.fidelity, .perplexity, .mqar].contains(self) }
}

/// How a sample's suffix (the question) reaches the cache.
public enum SuffixMode: String, CaseIterable, Sendable, Codable {
    /// Token by token through the decode path (Quest's passkey setup): decode-time policies act on it.
    case decode
    /// Prefilled after the compressed context, itself not compressed (kvpress's pipeline).
    case prefill
    /// Prefilled together with the context and compressed with it.
    case compressed
}

/// One task instance, generated from (task spec, sample index): everything a run needs.
public struct TaskSample: Sendable {
    /// Tokens prefilled (and compressed by the policy).
    public var context: [Int]
    /// Tokens fed after the context according to `suffixMode` (the question); may be empty.
    public var suffix: [Int]
    /// Greedy tokens to generate after the suffix (0 for teacher-forced tasks).
    public var maxNewTokens: Int
    /// Reference answers for generation tasks (scored on the decoded output).
    public var answers: [String]
    /// Teacher-forced labels: (index in context + suffix whose logits predict, expected token).
    public var labels: [Label]
    /// Sample facts recorded with the run (e.g. "depth", "key", "needle_position").
    public var meta: [String: Double]

    public struct Label: Sendable, Equatable {
        public var position: Int
        public var token: Int
        public init(position: Int, token: Int) { self.position = position; self.token = token }
    }

    public init(context: [Int], suffix: [Int] = [], maxNewTokens: Int = 0, answers: [String] = [],
                labels: [Label] = [], meta: [String: Double] = [:]) {
        self.context = context; self.suffix = suffix; self.maxNewTokens = maxNewTokens
        self.answers = answers; self.labels = labels; self.meta = meta
    }
}

/// A task's parameters: what a config sweeps for it.
public struct TaskSpec: Hashable, Sendable, Codable {
    public var kind: TaskKind
    /// Target context length in tokens (the prompt, question included).
    public var context: Int
    public var samples: Int
    public var seed: UInt64
    /// Needle depth in [0, 1]; nil = spread evenly over samples (passkey, needle).
    public var depth: Double?
    /// A user text file (haystack for needle tasks, corpus for perplexity/fidelity); nil = built-in.
    public var textFile: String?
    /// Teacher-forced positions evaluated after the context (fidelity, perplexity).
    public var evalTokens: Int
    public var suffixMode: SuffixMode
    /// Greedy tokens to generate at most; nil = the task's default (docs/tasks.md, "Generation").
    public var maxNewTokens: Int?
    /// Generation stops once the decoded output contains one of these (which is cut off); [] = none.
    public var stop: [String]
    /// Wrap the prompt in the model's chat template (instruct models); false = the raw prompt.
    public var chatTemplate: Bool
    /// Query heads switched off in the runs of this task (not in its full-cache reference); nil = none.
    public var ablation: HeadAblation?

    /// As run keys write them (`RunKey`).
    enum CodingKeys: String, CodingKey {
        case kind, context, samples, seed, depth, textFile = "text_file", evalTokens = "eval_tokens", suffixMode = "suffix"
        case maxNewTokens = "max_new_tokens", stop, chatTemplate = "chat_template"
    }

    /// The generation settings are written only when they differ from the defaults (`RunKey.text`).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(kind: try c.decode(TaskKind.self, forKey: .kind), context: try c.decode(Int.self, forKey: .context),
                  samples: try c.decode(Int.self, forKey: .samples), seed: try c.decode(UInt64.self, forKey: .seed),
                  depth: try c.decodeIfPresent(Double.self, forKey: .depth), textFile: try c.decodeIfPresent(String.self, forKey: .textFile),
                  evalTokens: try c.decode(Int.self, forKey: .evalTokens), suffixMode: try c.decode(SuffixMode.self, forKey: .suffixMode),
                  maxNewTokens: try c.decodeIfPresent(Int.self, forKey: .maxNewTokens),
                  stop: try c.decodeIfPresent([String].self, forKey: .stop) ?? [],
                  chatTemplate: try c.decodeIfPresent(Bool.self, forKey: .chatTemplate) ?? false)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(kind, forKey: .kind); try c.encode(context, forKey: .context)
        try c.encode(samples, forKey: .samples); try c.encode(seed, forKey: .seed)
        try c.encode(depth, forKey: .depth); try c.encode(textFile, forKey: .textFile)
        try c.encode(evalTokens, forKey: .evalTokens); try c.encode(suffixMode, forKey: .suffixMode)
        try c.encodeIfPresent(maxNewTokens, forKey: .maxNewTokens)
        if !stop.isEmpty { try c.encode(stop, forKey: .stop) }
        if chatTemplate { try c.encode(chatTemplate, forKey: .chatTemplate) }
    }

    public init(kind: TaskKind, context: Int, samples: Int = 1, seed: UInt64 = 0, depth: Double? = nil,
                textFile: String? = nil, evalTokens: Int = 32, suffixMode: SuffixMode? = nil,
                maxNewTokens: Int? = nil, stop: [String] = [], chatTemplate: Bool = false, ablation: HeadAblation? = nil) {
        self.kind = kind; self.context = context; self.samples = samples; self.seed = seed
        self.depth = depth; self.textFile = textFile; self.evalTokens = evalTokens
        self.suffixMode = suffixMode ?? (kind == .passkey ? .decode : .prefill)
        self.maxNewTokens = maxNewTokens; self.stop = stop; self.chatTemplate = chatTemplate
        self.ablation = ablation
    }
}

/// Scores a generated answer: task-specific (first integer equals the key, string_match_all...).
public typealias AnswerScorer = (_ output: String, _ sample: TaskSample) -> Double
