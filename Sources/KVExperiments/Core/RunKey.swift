import Foundation

/// What a grid point computes, typed: the model, the task and the policy (its canonical label,
/// fractional budgets as compression_ratio). Results files and baselines hold it as the JSON text
/// `text`, by which resume skips finished runs and compare and merge match runs.
public struct RunKey: Codable, Hashable, Sendable {
    public struct Task: Codable, Hashable, Sendable {
        public var kind: String
        public var context: Int
        public var samples: Int
        public var seed: UInt64
        public var depth: Double?
        public var textFile: String?
        public var evalTokens: Int
        public var suffix: String
        enum CodingKeys: String, CodingKey {
            case kind, context, samples, seed, depth, textFile = "text_file", evalTokens = "eval_tokens", suffix
        }
    }
    /// "id|spec": the model's id and where it comes from.
    public var model: String
    public var task: Task
    /// nil: the (model, task) pair's full-cache reference, which every policy of the pair shares.
    public var policy: String?

    public init(model: ModelEntry, task t: TaskSpec, policy: String?) {
        self.model = "\(model.id)|\(model.spec)"
        task = Task(kind: t.kind.rawValue, context: t.context, samples: t.samples, seed: t.seed, depth: t.depth,
                    textFile: t.textFile, evalTokens: t.evalTokens, suffix: t.suffixMode.rawValue)
        self.policy = policy
    }

    /// The key of the pair's shared full-cache reference (same model and task, no policy).
    public var reference: RunKey { var k = self; k.policy = nil; return k }

    /// The JSON text results files hold: byte for byte what KVLab has always written (keys of existing
    /// results files and baselines stay valid), readable back with `JSONDecoder`.
    public var text: String {
        let t = task
        let depth = t.depth.map { "\($0)" } ?? "null"
        let file = t.textFile.map { "\"\($0)\"" } ?? "null"
        return "{\"model\": \"\(model)\", \"task\": {\"kind\": \"\(t.kind)\", \"context\": \(t.context), " +
            "\"samples\": \(t.samples), \"seed\": \(t.seed), \"depth\": \(depth), \"text_file\": \(file), " +
            "\"eval_tokens\": \(t.evalTokens), \"suffix\": \"\(t.suffix)\"}, \"policy\": \"\(policy ?? "")\"}"
    }
}
