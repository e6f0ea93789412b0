import Foundation
import KVModel
import KVPolicies

/// `tasks:` entries -> TaskSpec values (docs/config.md).
enum TaskParser {
    static let keys = ["task", "context", "samples", "seed", "depth", "text_file", "eval_tokens", "suffix", "models",
                       "max_new_tokens", "stop", "chat_template"] + ablationKeys

    /// The task points of one entry, with the model ids it is restricted to (nil = every model).
    static func expand(_ f: Field, defaultSeed: UInt64, modelIDs: [String]) throws -> [(TaskSpec, [String]?)] {
        let points = try Sweep.expand(f, allowed: keys, fixed: ["task", "text_file", "models", "stop", "ablate_scores"])
        var only: [String]? = nil
        if let m = f.child("models") {
            only = try m.values().map { v in
                let id = try v.string()
                guard modelIDs.contains(id) else { throw v.error("no model with id '\(id)'; models: \(modelIDs.joined(separator: ", "))") }
                return id
            }
        }
        return try points.map { p -> (TaskSpec, [String]?) in (try spec(p, f, defaultSeed), only) }
    }

    static func spec(_ p: [String: Field], _ f: Field, _ defaultSeed: UInt64) throws -> TaskSpec {
        guard let kindField = p["task"] else { throw f.error("missing 'task' (one of \(TaskKind.allCases.map(\.rawValue).joined(separator: ", ")))") }
        let kind = try kindField.choice(TaskKind.self)
        guard let ctx = p["context"] else { throw f.error("missing 'context' (tokens)") }
        let context = try ctx.int(min: 16, max: ResourceLimits.maxContext)
        var depth: Double? = nil
        if let d = p["depth"], !d.isNull {
            let v = try d.double()
            guard v >= 0 && v <= 1 else { throw d.error("expected a depth fraction in [0, 1], got \(v)") }
            depth = v
        }
        var textFile: String? = nil
        if let t = p["text_file"] {
            let path = try t.string()
            if RealText.isCorpus(path) {
                do { _ = try RealText.load(path) } catch { throw t.error(error.localizedDescription) }
            } else if !FileManager.default.isReadableFile(atPath: path) {
                throw t.error("text file '\(path)' not found or unreadable (or a corpus: \(RealText.names.map { RealText.prefix + $0 }.joined(separator: ", ")))")
            }
            textFile = path
        }
        let evalTokens = try p["eval_tokens"]?.int(min: 1, max: ResourceLimits.maxContext) ?? 32
        if kind.isTeacherForced && evalTokens >= context {
            throw (p["eval_tokens"] ?? ctx).error("eval_tokens (\(evalTokens)) must be smaller than the context (\(context))")
        }
        let maxNew = try p["max_new_tokens"].map { try $0.int(min: 1, max: ResourceLimits.maxContext) }
        var stop: [String] = []
        if let st = p["stop"] {
            stop = try st.values().map { v in
                let s = try v.string()
                guard !s.isEmpty else { throw v.error("expected a non-empty stop string") }
                return s
            }
        }
        let chat = try p["chat_template"]?.bool() ?? false
        if kind.isTeacherForced, let key = ["max_new_tokens", "stop", "chat_template"].first(where: { p[$0] != nil }) {
            throw p[key]!.error("'\(key)' applies to generation tasks; \(kind.rawValue) is teacher-forced")
        }
        return TaskSpec(kind: kind, context: context, samples: try p["samples"]?.int(min: 1, max: ResourceLimits.maxSamples) ?? 10,
                        seed: try p["seed"].map { UInt64(try $0.int(min: 0)) } ?? defaultSeed,
                        depth: depth, textFile: textFile, evalTokens: evalTokens,
                        suffixMode: try p["suffix"]?.choice(SuffixMode.self),
                        maxNewTokens: maxNew, stop: stop, chatTemplate: chat, ablation: try ablation(p, f))
    }
}

extension TaskParser {
    /// Head ablation keys of a task entry (docs/heads.md).
    static let ablationKeys = ["ablate_heads", "ablate_scores", "ablate_score", "ablate_mode", "ablate_phase"]

    static func ablation(_ p: [String: Field], _ f: Field) throws -> HeadAblation? {
        guard let sel = p["ablate_heads"] else {
            if let other = ablationKeys.dropFirst().first(where: { p[$0] != nil }) {
                throw p[other]!.error("'\(other)' needs 'ablate_heads' (none, top:K, random:K:SEED or heads:L.H,...)")
            }
            return nil
        }
        let selection: HeadAblation.Selection
        do { selection = try HeadAblation.parseSelection(try sel.string()) } catch { throw sel.error(error.localizedDescription) }
        var a = HeadAblation(selection: selection, scores: try p["ablate_scores"]?.string(),
                             score: try p["ablate_score"]?.string() ?? "retrieval_score",
                             mode: try p["ablate_mode"]?.choice(HeadMask.Mode.self) ?? .uniform,
                             phases: try p["ablate_phase"]?.choice(HeadMask.Phases.self) ?? .decode)
        if let s = p["ablate_scores"] {
            do { _ = try HeadScoreFile.load(a.scores!).ranked(by: a.score) } catch { throw s.error(error.localizedDescription) }
        } else if case .top = selection {
            throw sel.error("top:K ranks heads by a score file: add 'ablate_scores: FILE' (written by kvlab calibrate heads)")
        }
        if case .none = selection { a.scores = nil }
        return a
    }
}
