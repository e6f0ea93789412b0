// Retrieval-head detection (`kvlab calibrate heads`).
// Paper: Wu et al., "Retrieval Head Mechanistically Explains Long-Context Factuality", arXiv 2404.15574.
// Reference: nightdessert/Retrieval_Head, retrieval_head_detection.py (retrieval_calculate, decode,
// find_needle_idx, evaluate_and_log).
import Foundation
import KVCacheCore
import KVModel
import KVTensor

/// A needle the detector hides: the sentence, the question, the text that opens the answer and the
/// part of the needle the model must copy (the reference's `real_needle`).
public struct DetectionNeedle: Sendable, Hashable {
    public var needle: String, question: String, answerPrefix: String, answer: String
    public init(needle: String, question: String, answerPrefix: String, answer: String) {
        self.needle = needle; self.question = question; self.answerPrefix = answerPrefix; self.answer = answer
    }

    /// KVLab's own needles for English models (the first is the style's: the reference's San Francisco
    /// needle). Short answers a small model can copy after the answer prefix.
    public static let builtin: [DetectionNeedle] = [
        DetectionNeedle(needle: "The secret ingredient of the old baker's bread is a spoonful of wild mountain honey.",
                        question: "What is the secret ingredient of the old baker's bread?",
                        answerPrefix: "Answer: The secret ingredient of the old baker's bread is",
                        answer: "a spoonful of wild mountain honey"),
        DetectionNeedle(needle: "The best way to cross the northern river is to take the red ferry that leaves at dawn.",
                        question: "What is the best way to cross the northern river?",
                        answerPrefix: "Answer: The best way to cross the northern river is",
                        answer: "to take the red ferry that leaves at dawn"),
        DetectionNeedle(needle: "The lighthouse keeper named his three cats Pepper, Rosemary and Thyme.",
                        question: "What did the lighthouse keeper name his three cats?",
                        answerPrefix: "Answer: The lighthouse keeper named his three cats",
                        answer: "Pepper, Rosemary and Thyme"),
    ]
}

/// What one needle prompt gave.
public struct DetectionPrompt: Sendable {
    public var context: Int, depth: Double, needle: Int
    /// The needle answer's token span in the prompt [start, end) (the reference's needle_start/end).
    public var span: Range<Int>
    public var generated: [Int]
    public var response: String
    /// ROUGE-1 recall of the answer in the response (the reference keeps prompts above 0.5).
    public var recall: Double
    /// Hits / span length per [layer * H + head] (the reference's retrieval_score[l][h][0]).
    public var scores: [Float]
    public var used: Bool
}

public enum RetrievalHeadDetector {
    /// The reference's find_needle_idx: the first window of len(answer) prompt tokens whose token set
    /// covers more than 90% of the answer's distinct tokens.
    public static func findSpan(_ answer: [Int], in prompt: [Int]) -> Range<Int>? {
        let want = Set(answer)
        guard !answer.isEmpty, prompt.count >= answer.count else { return nil }
        for i in 0...(prompt.count - answer.count) {
            let have = Set(prompt[i..<(i + answer.count)])
            if Double(have.intersection(want).count) / Double(want.count) > 0.9 { return i..<(i + answer.count) }
        }
        return nil
    }

    /// ROUGE-1 recall (rouge-score's tokenisation, no stemming): overlap / reference tokens.
    public static func rouge1Recall(reference: String, candidate: String) -> Double {
        let r = TaskScoring.rougeTokens(reference), c = TaskScoring.rougeTokens(candidate)
        guard !r.isEmpty else { return 0 }
        var counts: [String: Int] = [:]
        for t in c { counts[t, default: 0] += 1 }
        var overlap = 0
        for t in r where (counts[t] ?? 0) > 0 { counts[t]! -= 1; overlap += 1 }
        return Double(overlap) / Double(r.count)
    }

    /// The reference's scoring of one prompt: prefill all but the last prompt token, then decode it and
    /// the greedy continuation (at most `maxNewTokens`, stopping after EOS or a token for which `stop`
    /// is true). At each step, a query head scores 1/|span| when its top-1 attended position p lies in
    /// `span` and prompt[p] equals the token this step generates (a copy). Returns the per-head sums
    /// [L * H] and the generated ids. The recorder's long-context statistics accumulate too.
    /// `observer` (tests) sees the same cache beside the recorder and changes nothing.
    static func score(model: LlamaModel, prompt: [Int], span: Range<Int>, maxNewTokens: Int, eos: Set<Int>,
                      stop: (Int) -> Bool, recorder: HeadScoreRecorder, observer: CachePolicy? = nil) -> (scores: [Float], generated: [Int]) {
        precondition(prompt.count >= 2 && span.lowerBound >= 0 && span.upperBound <= prompt.count && !span.isEmpty)
        let c = model.config, H = c.heads
        let policy: CachePolicy = observer.map { try! PolicyStack([recorder, $0]) } ?? recorder
        let cache = model.makeCache(policy: policy, initialCapacity: prompt.count + maxNewTokens + 1)
        _ = model.forward(Array(prompt.dropLast()), startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        var scores = [Float](repeating: 0, count: c.layers * H)
        var input = prompt.last!, generated: [Int] = []
        let unit = 1 / Float(span.count)
        while generated.count < maxNewTokens {
            recorder.resetTop1()
            recorder.armed = true
            let logits = model.forward([input], startPosition: cache.stats.tokensSeen, cache: cache, phase: .decode)
            recorder.armed = false
            let next = logits.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: $0.count) }
            generated.append(next)
            for l in 0..<c.layers { for h in 0..<H {
                let p = recorder.top1[l][h]
                if p >= 0, span.contains(p), prompt[p] == next { scores[l * H + h] += unit }
            } }
            if eos.contains(next) || stop(next) { break }
            input = next
        }
        return (scores, generated)
    }
}
