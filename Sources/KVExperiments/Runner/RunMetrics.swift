import Foundation

/// The per-run figures beyond the task score: what fraction of which tokens a policy kept, the
/// score's interval, and the run's text facts (docs/results-schema.md).
enum RunFractions {
    /// Tasks whose per-sample score is 0 or 1 (an accuracy): Wilson interval. The others' scores
    /// are fractions or log ratios per sample: Student's t interval of the mean.
    static let binaryScoreTasks: Set<TaskKind> = [.passkey, .needle, .niahSingle, .niahMultikey]

    /// Tokens the policy compressed: the context, with the question when it is compressed too.
    static func compressedLength(_ s: TaskSample, task: TaskSpec) -> Int {
        s.context.count + (!task.kind.isTeacherForced && task.suffixMode == .compressed ? s.suffix.count : 0)
    }

    /// Mean over layers and KV heads of the share of the compressed tokens (positions below
    /// `compressedLength`) still held at the end of the prompt.
    static func contextKept(_ retained: [[[Int]]], compressedLength n: Int) -> Double {
        guard n > 0 else { return .nan }
        var sum = 0.0, cells = 0.0
        for layer in retained { for head in layer {
            sum += Double(head.lazy.filter { $0 < n }.count) / Double(n); cells += 1
        } }
        return cells > 0 ? sum / cells : .nan
    }

    /// Adds one sample's kept fraction per (layer, stored KV head): payload bytes the layer's own
    /// store holds over the full cache's bytes of the KV heads it stands for (all of a pooled
    /// group), so a layer that shares another's store (CLA) keeps 0, a merged (MiniCache) or
    /// quantized (KIVI) one the share of bytes it really holds.
    static func addKept(_ kept: inout [Float], policy: [[Int]], reference: [[Int]], samples: Int) {
        for (l, heads) in policy.enumerated() {
            let full = reference[l]
            let group = max(full.count / max(heads.count, 1), 1)
            for (h, bytes) in heads.enumerated() {
                let denominator = full[(h * group)..<min((h + 1) * group, full.count)].reduce(0, +)
                kept[l * heads.count + h] += Float(Double(bytes) / Double(max(denominator, 1))) / Float(samples)
            }
        }
    }

    /// score_n, score_lo, score_hi: the sample count and the 95% interval of the run's score.
    static func interval(_ scores: [Double], kind: TaskKind) -> [RunRecord.Metric] {
        let values = scores.filter { !$0.isNaN }
        let bounds: (lo: Double, hi: Double)
        if binaryScoreTasks.contains(kind) && values.allSatisfy({ $0 == 0 || $0 == 1 }) {
            bounds = Intervals.wilson(successes: values.reduce(0, +), n: values.count)
        } else {
            let t = Intervals.t(values)
            bounds = (t.lo, t.hi)
        }
        return [.init("score_n", Double(values.count)), .init("score_lo", bounds.lo), .init("score_hi", bounds.hi)]
    }

    /// The run's text facts: the budget as written, the named setup its parameters match, how the
    /// question reached the cache, and where the task's text came from.
    static func info(_ point: GridPoint, textSource: String) -> [RunRecord.Info] {
        let task = point.task
        let suffix = task.kind.isTeacherForced ? "decode" : task.suffixMode.rawValue
        return [.init("budget_kind", point.policy.budgetForm?.kind ?? ""),
                .init("setup", PolicySetup.name(of: point.policy)),
                .init("suffix", suffix),
                .init("text_source", textSource),
                .init("kv_dtype", point.model.kvDType.rawValue)]
    }

    /// Provenance of a task's text file as JSON: a Debian corpus (name, package, files, sha256 of
    /// the text) or a user's file (path, sha256 of its bytes).
    static func textSource(_ spec: String) throws -> String {
        func json(_ pairs: [(String, Any)]) -> String {
            let object = Dictionary(pairs, uniquingKeysWith: { a, _ in a })
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
            return String(decoding: data, as: UTF8.self)
        }
        if RealText.isCorpus(spec) {
            let c = try RealText.load(spec)
            return json([("name", c.name), ("package", c.package), ("files", c.files), ("sha256", c.sha256)])
        }
        return json([("path", spec), ("sha256", try SHA256.hex(file: spec))])
    }
}
