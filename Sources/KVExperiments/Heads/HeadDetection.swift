// `kvlab calibrate heads`: retrieval scores (Wu et al., arXiv 2404.15574, reference
// nightdessert/Retrieval_Head) and long-context scores (Donhauser et al., arXiv 2502.09647) per head.
import Foundation
import KVHDF5
import KVModel
import KVPolicies

/// The detection grid: needles x context lengths x depths, as in the reference's tester
/// (context_lengths x document_depth_percents per needle), over a haystack of real text.
public struct HeadDetectionOptions: Sendable {
    public var contexts: [Int] = [1000, 2000]
    /// Depths per context: linspace(0, 1, depths), as the reference's document_depth_percents.
    public var depths: Int = 10
    /// Haystack text (a corpus such as debian:kjv or a file); nil = the style's filler sentences.
    public var textFile: String? = nil
    public var seed: UInt64 = 0
    /// nil = the style's own needle plus `DetectionNeedle.builtin` (English styles only).
    public var needles: [DetectionNeedle]? = nil
    public var maxNewTokens = 50
    /// Prompts whose response recalls less than this share of the answer (ROUGE-1) are not counted.
    public var recallThreshold = 0.5
    public var longContext = LongContextStats.Options()
    public init() {}
}

/// Scores per head and everything needed to trust them.
public struct HeadDetectionResult {
    public var layers: Int, queryHeads: Int
    public var prompts: [DetectionPrompt]
    public var needles: [DetectionNeedle]
    public var options: HeadDetectionOptions
    /// [L * H] mean of the per-prompt scores over the prompts used (the reference's head_score).
    public var retrieval: [Float]
    public var longContext: [String: [Float]]
    public var longContextQueries: Int
    public var attributes: [String: String]

    /// Share of heads at or above `threshold`.
    public func fraction(above threshold: Float) -> Double {
        Double(retrieval.filter { $0 >= threshold }.count) / Double(max(retrieval.count, 1))
    }
}

extension RetrievalHeadDetector {
    /// Runs the grid on a model through its tokenizer (`codec`) and prompt style.
    public static func detect(model: LlamaModel, codec: TextCodec, style: PromptStyle, options o: HeadDetectionOptions,
                              attributes: [String: String] = [:], progress: (String) -> Void = { _ in }) throws -> HeadDetectionResult {
        let own = DetectionNeedle(needle: style.needle, question: style.needleQuestion, answerPrefix: style.needleAnswerPrefix,
                                  answer: style.needleAnswer)
        let needles = o.needles ?? ([own] + (style.name == PromptStyle.standard.name ? DetectionNeedle.builtin : []))
        let c = model.config, L = c.layers, H = c.heads
        let recorder = HeadScoreRecorder(longContext: o.longContext)
        var prompts: [DetectionPrompt] = []
        let eos = Set(c.eosTokenIds)
        let answerCodec = codec as? TokenizerCodec
        for (ni, needle) in needles.enumerated() {
            var s = style
            s.needle = needle.needle; s.needleQuestion = needle.question
            s.needleAnswerPrefix = needle.answerPrefix; s.needleAnswer = needle.answer
            // The answer's ids without special tokens (the reference: add_special_tokens=False); byte-level
            // BPE encodes a word after a space differently, so the mid-sentence form " answer" is tried too.
            func ids(_ text: String) -> [Int] {
                answerCodec?.tokenizer.encode(text, addSpecialTokens: false) ?? Array(codec.encode(text).drop { $0 == c.bosTokenId })
            }
            let answerForms = [ids(s.number(needle.answer)), ids(" " + s.number(needle.answer))]
            for context in o.contexts {
                let spec = TaskSpec(kind: .needle, context: context, samples: o.depths, seed: o.seed, textFile: o.textFile)
                let samples = try TaskFactory.samples(spec, codec: codec, vocabularySize: c.vocabSize,
                                                      options: TaskOptions(style: s, maxNewTokens: o.maxNewTokens))
                for (i, sample) in samples.enumerated() {
                    let prompt = sample.context + sample.suffix
                    guard let span = answerForms.lazy.compactMap({ findSpan($0, in: prompt) }).first else {
                        throw TaskError.invalidSpec("needle \(ni) ('\(needle.answer)'): its answer's tokens were not found in the prompt (context \(context), depth \(TaskFactory.depth(spec, index: i)))")
                    }
                    let r = score(model: model, prompt: prompt, span: span, maxNewTokens: o.maxNewTokens, eos: eos,
                                  stop: { codec.decode([$0]).contains("\n") }, recorder: recorder)
                    let response = codec.decode(r.generated).trimmingCharacters(in: .whitespacesAndNewlines)
                    let recall = rouge1Recall(reference: needle.answer,
                                              candidate: s.joinSpacedDigits ? TaskScoring.joinSpacedDigits(response) : response)
                    prompts.append(DetectionPrompt(context: prompt.count, depth: TaskFactory.depth(spec, index: i), needle: ni,
                                                   span: span, generated: r.generated, response: response, recall: recall,
                                                   scores: r.scores, used: recall > o.recallThreshold))
                    progress(String(format: "needle %d ctx %d depth %.2f: recall %.2f  %@", ni, prompt.count,
                                    TaskFactory.depth(spec, index: i), recall, String(response.prefix(60))))
                }
            }
        }
        let used = prompts.filter(\.used)
        var retrieval = [Float](repeating: used.isEmpty ? .nan : 0, count: L * H)
        for p in used { for i in retrieval.indices { retrieval[i] += p.scores[i] / Float(used.count) } }
        let st = recorder.stats!
        let lc: [String: [Float]] = [
            "lc_bulk_mass": st.mean(st.bulkMass), "lc_qada_local": st.mean(st.qadaLocal), "lc_qada_bulk": st.mean(st.qadaBulk),
            "lc_long_oracle": st.mean(st.longOracle), "lc_long_qada_local": st.mean(st.longLocal),
            "lc_long_qada_bulk": st.mean(st.longBulk), "lc_agree_qada_local": st.mean(st.agreeLocal),
            "lc_agree_qada_bulk": st.mean(st.agreeBulk),
        ]
        return HeadDetectionResult(layers: L, queryHeads: H, prompts: prompts, needles: needles, options: o, retrieval: retrieval,
                                   longContext: lc, longContextQueries: st.queries.min() ?? 0, attributes: attributes)
    }
}
