import Foundation

/// What a grid point computes, typed: the model, the task and the policy (its canonical label,
/// fractional budgets as compression_ratio). Results files and baselines hold it as the JSON text
/// `text`, by which resume skips finished runs and compare and merge match runs.
public struct RunKey: Codable, Hashable, Sendable {
    /// "id|spec": the model's id and where it comes from, then "|kv_dtype=f16" (or bf16) when the
    /// KV cache is not Float32 (Float32 keys are the same as before the key existed).
    public var model: String
    public var task: TaskSpec
    /// nil: the (model, task) pair's full-cache reference, which every policy of the pair shares.
    public var policy: String?
    /// The task's head ablation (`HeadAblation.label`); nil = none (and not written).
    public var ablateHeads: String?

    enum CodingKeys: String, CodingKey { case model, task, policy, ablateHeads = "ablate_heads" }

    public init(model: ModelEntry, task: TaskSpec, policy: String?) {
        // Float32 weights compute other logits (summation order), a half KV cache others again:
        // points of their own. The defaults add nothing, so results of earlier versions keep their keys.
        let weights = model.weights == .stored ? "" : "|weights=\(model.weights.rawValue)"
        self.model = "\(model.id)|\(model.spec)\(weights)" + (model.kvDType == .f32 ? "" : "|kv_dtype=\(model.kvDType.rawValue)")
        var t = task
        t.ablation = nil   // held as its label, which the text writes after the policy
        self.task = t
        self.policy = policy
        ablateHeads = task.ablation?.label
    }

    /// The key of the pair's shared full-cache reference (same model and task, no policy): the
    /// intact model's, also for an ablated task.
    public var reference: RunKey { var k = self; k.policy = nil; k.ablateHeads = nil; return k }

    /// The JSON text results files hold: byte for byte what KVLab has always written (keys of existing
    /// results files and baselines stay valid), readable back with `JSONDecoder`.
    public var text: String {
        let t = task
        let depth = t.depth.map { "\($0)" } ?? "null"
        let file = t.textFile.map { "\"\($0)\"" } ?? "null"
        return "{\"model\": \"\(model)\", \"task\": {\"kind\": \"\(t.kind.rawValue)\", \"context\": \(t.context), " +
            "\"samples\": \(t.samples), \"seed\": \(t.seed), \"depth\": \(depth), \"text_file\": \(file), " +
            "\"eval_tokens\": \(t.evalTokens), \"suffix\": \"\(t.suffixMode.rawValue)\"\(generation)}, \"policy\": \"\(policy ?? "")\"" +
            (ablateHeads.map { ", \"ablate_heads\": \"\($0)\"" } ?? "") + "}"
    }

    /// The task's generation settings that differ from the defaults, as JSON members (empty for a
    /// task that sets none, so keys of configs written before them stay byte-identical).
    var generation: String {
        var parts: [String] = []
        if let n = task.maxNewTokens { parts.append("\"max_new_tokens\": \(n)") }
        if !task.stop.isEmpty { parts.append("\"stop\": " + ResultsIO.encodeNames(task.stop)) }
        if task.chatTemplate { parts.append("\"chat_template\": true") }
        return parts.map { ", " + $0 }.joined()
    }
}
