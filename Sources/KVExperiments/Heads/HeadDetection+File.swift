// The head-score file of `kvlab calibrate heads` (format documented in docs/heads.md).
import Foundation
import KVHDF5
import KVPolicies

extension ModelText {
    /// SHA-256 of a model's weights: a file (.gguf), a folder's *.safetensors (names and contents,
    /// sorted), or the spec itself for a synthetic model.
    public static func fingerprint(_ spec: String) throws -> String {
        if spec.hasPrefix("synthetic:") { return "synthetic (\(spec))" }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDir) else { return "missing" }
        if !isDir.boolValue { return try SHA256.hex(file: spec) }
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: spec)) ?? []).filter { $0.hasSuffix(".safetensors") }.sorted()
        var h = SHA256()
        for f in files { h.update(f); h.update(try SHA256.hex(file: (spec as NSString).appendingPathComponent(f))) }
        return h.finalize()
    }
}

extension HeadDetectionResult {
    /// Writes the scores (atomically): every [L, H] map as float32, the per-prompt records and the
    /// provenance attributes (docs/heads.md). `HeadScoreFile.load` reads it back.
    public func save(to path: String) throws {
        let L = layers, H = queryHeads, P = prompts.count
        try H5File.writeAtomically(to: path) { f in
            let root = f.root
            try root.setAttribute("format", HeadScoreFile.format)
            try root.setAttribute("version", 1)
            try root.setAttribute("layers", L)
            try root.setAttribute("query_heads", H)
            let r = try root.write("retrieval_score", floats: retrieval, shape: [L, H])
            try r.setAttribute("doc", "mean over the prompts used of hits / needle-answer tokens; a hit: the head's top-1 attention is on a needle-answer token equal to the token generated at that step (nightdessert/Retrieval_Head retrieval_calculate)")
            let docs = [
                "lc_bulk_mass": "mean over decode queries of the exact attention mass on the bulk (keys outside the first sinks and the last window)",
                "lc_qada_local": "mean of the second-moment estimate of the bulk mass, moments of the local window's keys (variant)",
                "lc_qada_bulk": "mean of the second-moment (QAdA) estimate of the bulk mass, moments of the bulk keys",
                "lc_long_oracle": "share of decode queries whose exact bulk mass >= lc_threshold",
                "lc_long_qada_local": "share of decode queries labelled long-context by the local-moment estimate",
                "lc_long_qada_bulk": "share of decode queries labelled long-context by the bulk-moment estimate",
                "lc_agree_qada_local": "share of decode queries where the local-moment label equals the exact label",
                "lc_agree_qada_bulk": "share of decode queries where the bulk-moment label equals the exact label",
            ]
            for (name, values) in longContext.sorted(by: { $0.key < $1.key }) {
                let ds = try root.write(name, floats: values, shape: [L, H])
                try ds.setAttribute("doc", docs[name] ?? "")
            }
            let pg = try root.createGroup("prompts")
            try pg.setAttribute("doc", "one entry per needle prompt, in run order")
            try pg.write("scores", floats: prompts.flatMap(\.scores), shape: [P, L, H], gzip: 4)
            try pg.write("used", uint8s: prompts.map { $0.used ? 1 : 0 }, shape: [P])
            try pg.write("recall", doubles: prompts.map(\.recall), shape: [P])
            try pg.write("context", int64s: prompts.map { Int64($0.context) }, shape: [P])
            try pg.write("depth", doubles: prompts.map(\.depth), shape: [P])
            try pg.write("needle", int64s: prompts.map { Int64($0.needle) }, shape: [P])
            try pg.write("span", int64s: prompts.flatMap { [Int64($0.span.lowerBound), Int64($0.span.upperBound)] }, shape: [P, 2])
            try pg.write("response", strings: prompts.map(\.response))
            try pg.write("generated_ids", strings: prompts.map { $0.generated.map(String.init).joined(separator: ",") })
            let n = try root.createGroup("needles")
            try n.write("needle", strings: needles.map(\.needle))
            try n.write("question", strings: needles.map(\.question))
            try n.write("answer_prefix", strings: needles.map(\.answerPrefix))
            try n.write("answer", strings: needles.map(\.answer))
            let o = options
            try root.setAttribute("contexts", o.contexts)
            try root.setAttribute("depths", o.depths)
            try root.setAttribute("seed", Int(o.seed))
            try root.setAttribute("max_new_tokens", o.maxNewTokens)
            try root.setAttribute("recall_threshold", o.recallThreshold)
            try root.setAttribute("prompts_total", P)
            try root.setAttribute("prompts_used", prompts.filter(\.used).count)
            try root.setAttribute("retrieval_threshold", 0.1)
            try root.setAttribute("fraction_above_0.1", fraction(above: 0.1))
            try root.setAttribute("lc_sinks", o.longContext.sinks)
            try root.setAttribute("lc_window", o.longContext.window)
            try root.setAttribute("lc_threshold", o.longContext.threshold)
            try root.setAttribute("lc_queries_per_head", longContextQueries)
            try root.setAttribute("haystack", o.textFile ?? "the prompt style's filler")
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try root.setAttribute(k, v) }
        }
    }

    /// Summary lines: the top heads and the share above the paper's 0.1.
    public func summary(top: Int = 15) -> [String] {
        let used = prompts.filter(\.used).count
        var out = [String(format: "prompts used %d of %d (ROUGE-1 recall > %.2f); heads with retrieval score >= 0.1: %d of %d (%.1f%%)",
                          used, prompts.count, options.recallThreshold, retrieval.filter { $0 >= 0.1 }.count, retrieval.count,
                          100 * fraction(above: 0.1))]
        let file = HeadScoreFile(layers: layers, queryHeads: queryHeads, maps: longContext.merging(["retrieval_score": retrieval]) { a, _ in a })
        let lc = longContext["lc_bulk_mass"] ?? [], ql = longContext["lc_qada_bulk"] ?? []
        out.append("rank  layer.head  retrieval  lc_bulk_mass  lc_qada_bulk")
        for (i, h) in ((try? file.ranked()) ?? []).prefix(top).enumerated() {
            let j = h.layer * queryHeads + h.head
            out.append(String(format: "%4d  %5d.%-4d  %9.3f  %12.3f  %12.3f", i + 1, h.layer, h.head, h.score,
                              lc.isEmpty ? .nan : lc[j], ql.isEmpty ? .nan : ql[j]))
        }
        return out
    }
}

extension ModelText {
    /// The model's text codec and prompt style (a folder's tokenizer.json and tasks.json, or a .gguf
    /// file's tokenizer with the standard style); nil for a synthetic model or a folder without a tokenizer.
    public static func textSetup(for spec: String) throws -> (codec: TextCodec, style: PromptStyle)? {
        guard !spec.hasPrefix("synthetic:") else { return nil }
        let (codec, style) = try TokenizerCodec.textSetup(model: spec)
        return codec.map { ($0, style) }
    }
}
