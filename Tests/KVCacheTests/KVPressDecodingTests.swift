import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// Decode-time eviction against kvpress 0.5.5's own pipeline (fixture from
/// scripts/fixtures/make_kvpress_decoding_fixtures.py; docs/kvpress-semantics.md section 7):
/// `schedule: always` with `decode_budget: prompt` is kvpress's PrefillDecodingPress with a
/// DecodingPress holding the cache at n_kept + question tokens. The question never evicts context.
final class KVPressDecodingTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let press: String
            let compression_ratio: Double
            let n_kept: Int
            let target_size: Int
            let greedy: [Int]
            let retained: [[[Int]]]
            let prompt_retained: [[[Int]]]
            let tie: Bool
        }
        let context_ids: [Int]
        let question_ids: [Int]
        let cases: [Case]
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/kvpress")

    static func positions(_ cache: KVCache) -> [[[Int]]] {
        cache.stores.map { layer in layer.map { s in (0..<s.count).map { s.position($0) }.sorted() } }
    }

    /// kvpress's pipeline: compressed prefill, the question prefilled without compression at the
    /// original positions, then greedy decoding (each generated token fed through the decode path).
    func run(_ model: LlamaModel, _ f: Fixture, policy: CachePolicy, steps: Int)
        -> (greedy: [Int], prompt: [[[Int]]], final: [[[Int]]], firstStep: [[[Int]]]) {
        let cache = model.makeCache(policy: policy)
        _ = model.forward(f.context_ids, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        cache.compressionEnabled = false
        var logits = model.forward(f.question_ids, startPosition: f.context_ids.count, cache: cache, phase: .prefill)
        cache.compressionEnabled = true
        let prompt = Self.positions(cache)
        var out: [Int] = [], firstStep: [[[Int]]] = []
        for i in 0..<steps {
            let next = logits.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: $0.count) }
            out.append(next)
            if i + 1 < steps {
                logits = model.forward([next], startPosition: f.context_ids.count + f.question_ids.count + i, cache: cache, phase: .decode)
                if i == 0 { firstStep = Self.positions(cache) }
            }
        }
        return (out, prompt, Self.positions(cache), firstStep)
    }

    func policy(_ c: Fixture.Case, _ schedule: EvictionSchedule) throws -> CachePolicy {
        let b = Budget.ratio(c.compression_ratio)
        switch c.press {
        case "TOVAPress": return try TOVA(budget: b, schedule: schedule)
        case "KnormPress": return try Knorm(budget: b, schedule: schedule)
        default: throw XCTSkip("no KVLab equivalent for \(c.press)")
        }
    }

    func testScheduleAlwaysHoldsThePromptLikeKVPressDecodingPress() throws {
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: Self.root.appendingPathComponent("decoding.json")))
        let model = try LlamaModel(checkpoint: Self.root.appendingPathComponent("model").path)
        var exact = 0
        for c in f.cases {
            let name = "\(c.press) r=\(c.compression_ratio)"
            let r = run(model, f, policy: try policy(c, .always), steps: c.greedy.count)
            XCTAssertEqual(r.prompt, c.prompt_retained, "\(name): the question must not evict context")
            for layer in r.final { for head in layer { XCTAssertEqual(head.count, c.target_size, name) } }
            if c.tie { continue }
            XCTAssertEqual(r.final, c.retained, "\(name): positions held after decoding differ from kvpress")
            XCTAssertEqual(r.greedy, c.greedy, "\(name): greedy continuation differs from kvpress")
            exact += 1
        }
        XCTAssertGreaterThanOrEqual(exact, 3)
    }

    /// `decode_budget: context` (KVLab's behaviour before the option): the first decode step cuts the
    /// cache back to the context's budget, evicting a question's length of tokens at once.
    func testDecodeBudgetContextEvictsTheQuestionsLength() throws {
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: Self.root.appendingPathComponent("decoding.json")))
        let model = try LlamaModel(checkpoint: Self.root.appendingPathComponent("model").path)
        let c = try XCTUnwrap(f.cases.first { $0.press == "TOVAPress" })
        let r = run(model, f, policy: try policy(c, EvictionSchedule(.always, decodeBudget: .context)), steps: 3)
        XCTAssertEqual(r.prompt, c.prompt_retained)
        for layer in r.firstStep { for head in layer { XCTAssertEqual(head.count, c.n_kept) } }
        let prefillOnly = run(model, f, policy: try policy(c, .prefill), steps: 3)
        for layer in prefillOnly.final { for head in layer { XCTAssertEqual(head.count, c.n_kept + f.question_ids.count + 2) } }
    }
}
