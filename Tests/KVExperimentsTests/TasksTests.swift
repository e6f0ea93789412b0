import Foundation
import XCTest
@testable import KVExperiments
import KVTokenizer

/// A word-level test codec: runs of letters (and '-') are tokens, digit runs are tokens (or each
/// digit one, `splitDigits`), every other non-space character is one, "\n" is one; other
/// whitespace is dropped. Ids are assigned on first sight from 4 up; `bos` prepends id 1.
final class WordCodec: TextCodec {
    private var ids: [String: Int] = [:]
    private var words: [Int: String] = [:]
    let splitDigits: Bool
    let bos: Bool
    init(splitDigits: Bool = false, bos: Bool = false) { self.splitDigits = splitDigits; self.bos = bos }

    func pieces(_ text: String) -> [String] {
        var out: [String] = [], cur = "", curIsDigit = false
        func flush() { if !cur.isEmpty { out.append(cur); cur = "" } }
        for ch in text {
            if ch.isLetter || ch == "-" {
                if curIsDigit { flush() }
                curIsDigit = false; cur.append(ch)
            } else if ch.isNumber {
                if !curIsDigit || splitDigits { flush() }
                curIsDigit = true; cur.append(ch)
            } else {
                flush()
                if ch == "\n" { out.append("\n") } else if !ch.isWhitespace { out.append(String(ch)) }
            }
        }
        flush()
        return out
    }

    func encode(_ text: String) -> [Int] {
        let body = pieces(text).map { p -> Int in
            if let id = ids[p] { return id }
            let id = ids.count + 4
            ids[p] = id; words[id] = p
            return id
        }
        return bos ? [1] + body : body
    }

    func decode(_ ids: [Int]) -> String { ids.compactMap { words[$0] }.joined(separator: " ") }
}

final class TasksTests: XCTestCase {
    let vocab = 1_000_000
    let textKinds: [TaskKind] = [.passkey, .needle, .niahSingle, .niahMultikey, .niahMultivalue, .niahMultiquery,
                                 .variableTracking, .commonWords, .perplexity]

    func same(_ a: TaskSample, _ b: TaskSample, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.context, b.context, file: file, line: line)
        XCTAssertEqual(a.suffix, b.suffix, file: file, line: line)
        XCTAssertEqual(a.answers, b.answers, file: file, line: line)
        XCTAssertEqual(a.labels, b.labels, file: file, line: line)
        XCTAssertEqual(a.meta, b.meta, file: file, line: line)
        XCTAssertEqual(a.maxNewTokens, b.maxNewTokens, file: file, line: line)
    }

    func tempFile(_ text: String, name: String = "haystack.txt") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-tasks-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    // MARK: - Determinism and length

    func testSampleDependsOnlyOnSeedAndIndex() throws {
        let codec = WordCodec()
        for kind in textKinds + [.mqar, .fidelity] {
            let spec = TaskSpec(kind: kind, context: 600, samples: 3, seed: 7)
            let all = try TaskFactory.samples(spec, codec: codec, vocabularySize: vocab)
            XCTAssertEqual(all.count, 3)
            // Sample 2 alone, from a fresh codec, and again within a longer run: identical.
            let alone = try TaskFactory.sample(spec, index: 2, codec: codec, vocabularySize: vocab)
            same(all[2], alone)
            var more = spec; more.samples = 5
            if kind != .passkey && kind != .needle {       // depth spread depends on `samples`
                same(all[2], try TaskFactory.samples(more, codec: codec, vocabularySize: vocab)[2])
            }
            var other = spec; other.seed = 8
            let changed = try TaskFactory.sample(other, index: 2, codec: codec, vocabularySize: vocab)
            if kind != .needle {                                // the needle task draws nothing at random
                XCTAssertTrue(changed.context + changed.suffix != alone.context + alone.suffix || changed.answers != alone.answers,
                              "\(kind): seed must matter")
            }
            XCTAssertNotEqual(all[0].context + all[0].suffix, all[1].context + all[1].suffix, "\(kind): samples differ")
        }
    }

    func testPromptFillsContextWithoutExceedingIt() throws {
        let ruler: Set<TaskKind> = [.niahSingle, .niahMultikey, .niahMultivalue, .niahMultiquery, .variableTracking, .commonWords]
        for kind in textKinds {
            for context in ruler.contains(kind) ? [1_000, 4_000] : [300, 1_000, 4_000] {
                let spec = TaskSpec(kind: kind, context: context, samples: 2, seed: 3)
                for s in try TaskFactory.samples(spec, codec: WordCodec(), vocabularySize: vocab) {
                    let total = s.context.count + s.suffix.count
                    // RULER counts the generated tokens in the length (niah.py:245).
                    let target = ruler.contains(kind) ? context - s.maxNewTokens : context
                    XCTAssertLessThanOrEqual(total, target, "\(kind) @ \(context)")
                    // Filler granularity is one word (at most 2 tokens here); a common-words entry is 3,
                    // its rare words repeat up to 3 times.
                    let slack = kind == .commonWords ? 14 : 3
                    XCTAssertGreaterThanOrEqual(total, target - slack, "\(kind) @ \(context)")
                    XCTAssertFalse(s.context.isEmpty)
                    if !kind.isTeacherForced { XCTAssertFalse(s.suffix.isEmpty); XCTAssertGreaterThan(s.maxNewTokens, 0) }
                }
            }
        }
        // Distractor-needle haystacks fit by whole sentences (about 15 tokens here).
        let spec = TaskSpec(kind: .niahMultikey, context: 2_000, seed: 1)
        let s = try TaskFactory.sample(spec, index: 0, codec: WordCodec(), vocabularySize: vocab,
                                       options: TaskOptions(haystack: .needles))
        XCTAssertLessThanOrEqual(s.context.count + s.suffix.count, 2_000 - 128)
        XCTAssertGreaterThanOrEqual(s.context.count + s.suffix.count, 2_000 - 128 - 20)
    }

    func testCodecWithBOSKeepsTheSplitExact() throws {
        let codec = WordCodec(bos: true)
        let spec = TaskSpec(kind: .passkey, context: 500, seed: 2, depth: 0.5)
        let s = try TaskFactory.sample(spec, index: 0, codec: codec, vocabularySize: vocab)
        XCTAssertEqual(s.context.first, 1)
        XCTAssertFalse(s.suffix.contains(1), "no BOS inside the question")
        XCTAssertEqual(codec.decode(s.suffix), "What is the pass key ? The pass key is")
        let pos = Int(s.meta["needle_position"]!)
        XCTAssertEqual(codec.decode(Array(s.context[pos..<pos + 4])), "The pass key is")
    }

    // MARK: - Passkey and needle placement

    func testPasskeyPromptAndDepth() throws {
        let codec = WordCodec()
        let spec = TaskSpec(kind: .passkey, context: 2_000, samples: 5, seed: 11)
        let samples = try TaskFactory.samples(spec, codec: codec, vocabularySize: vocab)
        for (i, s) in samples.enumerated() {
            let depth = Double(i) / 4
            XCTAssertEqual(s.meta["depth"], depth)
            let key = Int(s.meta["key"]!)
            XCTAssertTrue((1...50_000).contains(key))
            XCTAssertEqual(s.answers, [String(key)])
            XCTAssertEqual(s.maxNewTokens, 10)
            XCTAssertEqual(codec.decode(s.suffix), "What is the pass key ? The pass key is")
            let text = codec.decode(s.context)
            XCTAssertTrue(text.hasPrefix("There is an important info hidden inside a lot of irrelevant text ."))
            XCTAssertTrue(text.contains("The pass key is \(key) . Remember it . \(key) is the pass key ."))
            // The needle line starts at needle_position; the filler before it is depth x all filler.
            let pos = Int(s.meta["needle_position"]!)
            XCTAssertEqual(codec.decode(Array(s.context[pos..<pos + 5])), "The pass key is \(key)")
            let taskLine = codec.encode(PromptStyle.standard.passkeyTask).count + 1      // + "\n"
            let needleLine = codec.encode(PromptStyle.standard.passkeyNeedle.replacingOccurrences(of: "{key}", with: "1")).count + 1
            let filler = s.context.count - taskLine - needleLine - 1                       // "\n" after the filler
            let before = pos - taskLine - 1
            XCTAssertEqual(Double(before), depth * Double(filler), accuracy: 3, "sample \(i)")
        }
    }

    func testNeedleSitsAtRequestedDepthAfterASentenceEnd() throws {
        let codec = WordCodec()
        for depth in [0.0, 0.1, 0.35, 0.5, 0.8, 1.0] {
            let spec = TaskSpec(kind: .needle, context: 3_000, seed: 5, depth: depth)
            let s = try TaskFactory.sample(spec, index: 0, codec: codec, vocabularySize: vocab)
            let pos = Int(s.meta["needle_position"]!)
            let needle = codec.encode(PromptStyle.standard.needle)
            XCTAssertEqual(Array(s.context[pos..<pos + needle.count]), needle, "depth \(depth)")
            if pos > 0 { XCTAssertEqual(codec.decode([s.context[pos - 1]]), ".", "needle follows a sentence end") }
            let haystack = s.context.count - needle.count - 2                              // "\n\n"
            // Moved back to the previous sentence end: at most one filler sentence (5 tokens) early.
            XCTAssertLessThanOrEqual(Double(pos), depth * Double(haystack) + 0.5)
            XCTAssertGreaterThanOrEqual(Double(pos), depth * Double(haystack) - 6, "depth \(depth)")
            XCTAssertEqual(s.answers, ["eat a sandwich and sit in Dolores Park on a sunny day"])
            XCTAssertEqual(s.maxNewTokens, 30)
            XCTAssertEqual(codec.decode(s.suffix),
                           "What is the best thing to do in San Francisco ? \n Answer : The best thing to do in San Francisco is")
        }
        // Without spec.depth the samples sweep linspace(0, 1, samples).
        let sweep = TaskSpec(kind: .needle, context: 400, samples: 3, seed: 5)
        XCTAssertEqual(try TaskFactory.samples(sweep, codec: codec, vocabularySize: vocab).map { $0.meta["depth"]! }, [0, 0.5, 1])
    }

    func testNeedleInAUserTextFile() throws {
        var text = ""
        for i in 0..<400 { text += "Sentence number \(i) talks about rivers and hills.\(i % 7 == 6 ? "\n\n" : " ")" }
        let path = try tempFile(text)
        let codec = WordCodec()
        let spec = TaskSpec(kind: .needle, context: 1_500, seed: 1, depth: 0.5, textFile: path)
        let s = try TaskFactory.sample(spec, index: 0, codec: codec, vocabularySize: vocab)
        XCTAssertLessThanOrEqual(s.context.count + s.suffix.count, 1_500)
        XCTAssertGreaterThanOrEqual(s.context.count + s.suffix.count, 1_500 - 3)
        XCTAssertTrue(codec.decode(s.context).hasPrefix("Sentence number 0 talks about rivers and hills ."))
        let pos = Int(s.meta["needle_position"]!)
        XCTAssertEqual(codec.decode([s.context[pos - 1]]), ".")
        XCTAssertEqual(Double(pos) / Double(s.context.count), 0.5, accuracy: 0.02)
    }

    // MARK: - RULER

    func testRulerNeedlesAndAnswers() throws {
        let codec = WordCodec()
        for kind in [TaskKind.niahSingle, .niahMultikey, .niahMultivalue, .niahMultiquery] {
            let s = try TaskFactory.sample(TaskSpec(kind: kind, context: 1_500, seed: 9), index: 0,
                                           codec: codec, vocabularySize: vocab)
            let text = codec.decode(s.context), question = codec.decode(s.suffix)
            let expected = [.niahSingle: 1, .niahMultikey: 1, .niahMultivalue: 4, .niahMultiquery: 4][kind]!
            XCTAssertEqual(s.answers.count, expected, "\(kind)")
            for a in s.answers {
                XCTAssertEqual(a.count, 7); XCTAssertTrue(text.contains("is : \(a) ."), "\(kind): value \(a) in the haystack")
            }
            XCTAssertEqual(text.components(separatedBy: "One of the special magic numbers for").count - 1,
                           kind == .niahSingle ? 1 : 4)
            // RULER's singular template when one value is asked (niah.py:193-198).
            if expected == 1 {
                XCTAssertTrue(text.hasPrefix("A special magic number is hidden within the following text . Make sure to memorize it . I will quiz you about the number afterwards ."), text)
                XCTAssertTrue(question.hasPrefix("What is the special magic number for"), question)
                XCTAssertTrue(question.hasSuffix("mentioned in the provided text is"), question)
            } else {
                XCTAssertTrue(text.hasPrefix("Some special magic numbers are hidden"))
                XCTAssertTrue(question.hasPrefix("What are all the special magic numbers for"))
                XCTAssertTrue(question.hasSuffix("mentioned in the provided text are"))
            }
            XCTAssertEqual(s.maxNewTokens, 128)
            // The perfect answer scores 1; half of the values 0.5 (multi-answer tasks).
            XCTAssertEqual(TaskFactory.scorer(for: kind)!(s.answers.joined(separator: ", "), s), 1)
            if s.answers.count == 4 {
                XCTAssertEqual(TaskFactory.scorer(for: kind)!(s.answers[0] + " " + s.answers[2], s), 0.5)
            }
        }
        // Distractor haystack: many needles, only the real ones' values are answers.
        let s = try TaskFactory.sample(TaskSpec(kind: .niahMultikey, context: 1_200, seed: 9), index: 0,
                                       codec: codec, vocabularySize: vocab, options: TaskOptions(haystack: .needles, values: .uuids))
        let text = codec.decode(s.context)
        XCTAssertGreaterThan(text.components(separatedBy: "One of the special magic uuids for").count - 1, 20)
        XCTAssertEqual(s.answers.count, 1)
        XCTAssertEqual(s.answers[0].count, 36)
    }

    func testVariableTrackingAndCommonWords() throws {
        let codec = WordCodec()
        let vt = try TaskFactory.sample(TaskSpec(kind: .variableTracking, context: 2_400, seed: 4), index: 0,
                                        codec: codec, vocabularySize: vocab)
        XCTAssertEqual(vt.answers.count, 5)
        let text = codec.decode(vt.context)
        let value = Int(vt.meta["value"]!)
        XCTAssertTrue(text.contains("VAR \(vt.answers[0]) = \(value) ."))
        for i in 1..<5 { XCTAssertTrue(text.contains("VAR \(vt.answers[i]) = VAR \(vt.answers[i - 1]) .")) }
        let positions = (0..<5).map { vt.meta["needle_position_\($0)"]! }
        XCTAssertEqual(positions, positions.sorted(), "the chain reads in order")
        XCTAssertTrue(vt.answers.allSatisfy { $0.count == 5 && $0.allSatisfy(\.isUppercase) })
        // RULER's one-shot example first (variable_tracking.py:303-307): a whole prompt of about 500
        // tokens with three-letter names, then its answer; the task prompt after it.
        XCTAssertTrue(text.hasPrefix("Memorize and track the chain ( s ) of variable assignment"))
        let parts = text.components(separatedBy: "Memorize and track the chain ( s ) of variable assignment")
        XCTAssertEqual(parts.count, 3, "the example and the task")
        let answerLine = try XCTUnwrap(parts[1].components(separatedBy: "they are :").last)
        let exampleNames = answerLine.split(separator: " ").filter { $0 != "\n" }.map(String.init)
        XCTAssertEqual(exampleNames.count, 5)
        XCTAssertTrue(exampleNames.allSatisfy { $0.count == 3 && $0.allSatisfy(\.isUppercase) }, "\(exampleNames)")
        XCTAssertTrue(parts[1].contains("VAR \(exampleNames[1]) = VAR \(exampleNames[0]) ."))
        XCTAssertLessThanOrEqual(vt.meta["example_tokens"]!, 510)
        XCTAssertGreaterThan(vt.meta["example_tokens"]!, 480)
        // Below 2,000 tokens the example takes at most a quarter of the context.
        let shortVT = try TaskFactory.sample(TaskSpec(kind: .variableTracking, context: 1_000, seed: 4), index: 0,
                                             codec: codec, vocabularySize: vocab)
        XCTAssertLessThanOrEqual(shortVT.meta["example_tokens"]!, 260)

        // Common words below 4K: RULER's frequencies 6 and 1 (common_words_extraction.py:102-106).
        for (context, common, rare) in [(3_000, 6, 1), (6_000, 30, 3)] {
            let cw = try TaskFactory.sample(TaskSpec(kind: .commonWords, context: context, seed: 4), index: 0,
                                            codec: codec, vocabularySize: vocab)
            XCTAssertEqual(cw.answers.count, 10)
            let all = codec.decode(cw.context)
            let lists = all.components(separatedBy: "Memorize the ones that appear most often .")
            XCTAssertEqual(lists.count, 3, "the one-shot example and the task")
            // The example ends with its answer: the 10 common words, numbered.
            let exampleAnswer = try XCTUnwrap(lists[1].components(separatedBy: "most often in the list are :").last)
            XCTAssertTrue(exampleAnswer.hasPrefix(" 1 . "), exampleAnswer)
            XCTAssertTrue(exampleAnswer.contains(" 10 . "))
            // The task's list: "1. w 2. w ..." on one line.
            let entries = lists[2].components(separatedBy: "\n")[1].split(separator: " ")
            XCTAssertEqual(entries.count % 3, 0)
            var counts: [String: Int] = [:]
            for k in stride(from: 2, to: entries.count, by: 3) { counts[String(entries[k]), default: 0] += 1 }
            XCTAssertEqual(Int(cw.meta["common_frequency"]!), common, "context \(context)")
            XCTAssertEqual(Int(cw.meta["rare_frequency"]!), rare)
            for w in cw.answers { XCTAssertEqual(counts[w], common, w) }
            XCTAssertEqual(counts.count, 10 + Int(cw.meta["rare_words"]!))
            XCTAssertTrue(counts.filter { !cw.answers.contains($0.key) }.allSatisfy { $0.value == rare })
        }
        // A short context lowers the common frequency instead of failing.
        let short = try TaskFactory.sample(TaskSpec(kind: .commonWords, context: 500, seed: 4), index: 0,
                                           codec: codec, vocabularySize: vocab)
        XCTAssertLessThan(short.meta["common_frequency"]!, 6)
        XCTAssertGreaterThanOrEqual(short.meta["common_frequency"]!, 2)
    }

    // MARK: - Token-level tasks

    func testMQARLabelsPointAtKeysAndPredictTheirValues() throws {
        let v = 1_000
        let spec = TaskSpec(kind: .mqar, context: 256, samples: 2, seed: 3)
        for s in try TaskFactory.samples(spec, codec: nil, vocabularySize: v) {
            let d = Int(s.meta["pairs"]!)
            XCTAssertEqual(d, 64)
            XCTAssertEqual(s.context.count, 2 * d)
            XCTAssertEqual(s.context.count + s.suffix.count, 256)
            let seq = s.context + s.suffix
            var valueOf: [Int: Int] = [:]
            for i in 0..<d {
                let k = s.context[2 * i], val = s.context[2 * i + 1]
                XCTAssertTrue((4..<v / 2).contains(k)); XCTAssertTrue((v / 2..<v).contains(val))
                valueOf[k] = val
            }
            XCTAssertEqual(valueOf.count, d, "keys distinct")
            XCTAssertEqual(s.labels.count, d)
            XCTAssertEqual(Set(s.labels.map { seq[$0.position] }), Set(valueOf.keys), "every key asked once")
            for label in s.labels {
                XCTAssertGreaterThanOrEqual(label.position, s.context.count, "labels sit in the query part")
                XCTAssertEqual(valueOf[seq[label.position]], label.token, "the key's value is expected next")
            }
            let labelled = Set(s.labels.map(\.position))
            for (i, t) in s.suffix.enumerated() where !labelled.contains(s.context.count + i) {
                XCTAssertNil(valueOf[t], "filler tokens are not keys"); XCTAssertGreaterThanOrEqual(t, 4)
            }
            XCTAssertEqual(s.maxNewTokens, 0)
        }
        XCTAssertThrowsError(try TaskFactory.samples(TaskSpec(kind: .mqar, context: 64), codec: nil, vocabularySize: 5))
    }

    func testFidelityAndPerplexityLabels() throws {
        let spec = TaskSpec(kind: .fidelity, context: 300, samples: 2, seed: 1, evalTokens: 40)
        for s in try TaskFactory.samples(spec, codec: nil, vocabularySize: 500) {
            XCTAssertEqual(s.context.count, 260); XCTAssertEqual(s.suffix.count, 40)
            XCTAssertEqual(s.labels.map(\.position), Array(260..<300))
            let seq = s.context + s.suffix
            for l in s.labels.dropLast() { XCTAssertEqual(l.token, seq[l.position + 1]) }
            XCTAssertTrue(seq.allSatisfy { (4..<500).contains($0) })
        }
        let codec = WordCodec()
        let p = try TaskFactory.sample(TaskSpec(kind: .perplexity, context: 500, seed: 2, evalTokens: 64), index: 0,
                                       codec: codec, vocabularySize: vocab)
        XCTAssertEqual(p.context.count + p.suffix.count, 500)
        XCTAssertEqual(p.suffix.count, 64)
        let seq = p.context + p.suffix
        for l in p.labels.dropLast() { XCTAssertEqual(l.token, seq[l.position + 1]) }
        XCTAssertTrue(codec.decode(Array(p.context.prefix(40))).contains("."), "sample text is sentences")

        // Fidelity through a user text file: windows of the file's tokens.
        let path = try tempFile(String(repeating: "one two three four five six seven. ", count: 200))
        let f = try TaskFactory.sample(TaskSpec(kind: .fidelity, context: 100, seed: 1, textFile: path), index: 0,
                                       codec: codec, vocabularySize: vocab)
        XCTAssertEqual(f.context.count + f.suffix.count, 100)
        XCTAssertThrowsError(try TaskFactory.sample(TaskSpec(kind: .fidelity, context: 100, textFile: path), index: 0,
                                                    codec: nil, vocabularySize: vocab))
    }

    // MARK: - Errors

    func testTextTasksWithoutCodecThrowAClearError() {
        for kind in textKinds {
            XCTAssertThrowsError(try TaskFactory.samples(TaskSpec(kind: kind, context: 500), codec: nil,
                                                         vocabularySize: vocab, modelName: "tiny-synthetic")) { error in
                XCTAssertEqual("\(error)", "task '\(kind.rawValue)' needs a tokenizer; model tiny-synthetic has none")
                XCTAssertEqual(error as? TaskError, .needsTokenizer(task: kind.rawValue, model: "tiny-synthetic", reason: nil))
            }
        }
        XCTAssertNoThrow(try TaskFactory.samples(TaskSpec(kind: .fidelity, context: 50), codec: nil, vocabularySize: 100))
    }

    func testMissingOrShortTextFileNamesTheFile() throws {
        let missing = "/nonexistent/kvlab/essays.txt"
        for kind in [TaskKind.needle, .passkey, .perplexity, .niahSingle] {
            XCTAssertThrowsError(try TaskFactory.samples(TaskSpec(kind: kind, context: 500, textFile: missing),
                                                         codec: WordCodec(), vocabularySize: vocab)) { error in
                XCTAssertTrue("\(error)".contains(missing), "\(error)")
            }
        }
        let short = try tempFile("Only a few words here. And one more sentence.", name: "short.txt")
        for kind in [TaskKind.needle, .perplexity] {
            XCTAssertThrowsError(try TaskFactory.samples(TaskSpec(kind: kind, context: 500, textFile: short),
                                                         codec: WordCodec(), vocabularySize: vocab)) { error in
                XCTAssertTrue("\(error)".contains(short) && "\(error)".contains("too short"), "\(error)")
            }
        }
        XCTAssertThrowsError(try TaskFactory.samples(TaskSpec(kind: .passkey, context: 30), codec: WordCodec(),
                                                     vocabularySize: vocab)) { error in
            guard case .contextTooShort = error as? TaskError else { return XCTFail("\(error)") }
        }
    }

    // MARK: - Scorers
}
