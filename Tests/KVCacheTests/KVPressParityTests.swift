import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// Exact parity with NVIDIA kvpress 0.5.5 (fixtures from scripts/fixtures/make_kvpress_fixtures.py;
/// semantics in docs/kvpress-semantics.md): same retained positions per layer and KV head, and the
/// same greedy continuation after an uncompressed 8-token question.
final class KVPressParityTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let press: String
            let params: [String: Double]
            let compression_ratio: Double
            let n_kept: Int
            let retained: [[[Int]]]
            let greedy: [Int]
            let structural_tie: Bool
        }
        let context_ids: [Int]
        let question_ids: [Int]
        let full_greedy: [Int]
        let cases: [Case]
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/kvpress")

    func policy(for c: Fixture.Case) throws -> CachePolicy {
        let b = Budget.ratio(c.compression_ratio)
        switch c.press {
        case "StreamingLLMPress": return try StreamingLLM(budget: b, sinks: Int(c.params["n_sink"]!), schedule: .prefill)
        case "SnapKVPress": return try SnapKV(budget: b, window: Int(c.params["window_size"]!), kernel: Int(c.params["kernel_size"]!))
        case "TOVAPress": return try TOVA(budget: b, schedule: .prefill)
        case "KnormPress": return try Knorm(budget: b)
        case "ObservedAttentionPress": return try H2O(budget: b, scoring: .observed)
        default: throw XCTSkip("no KVLab equivalent for \(c.press)")
        }
    }

    /// Prefill the context (compressed), record retained positions, feed the question uncompressed,
    /// then greedy-decode like kvpress's pipeline (positions continue from the original length).
    func runPipeline(_ model: LlamaModel, _ f: Fixture, policy: CachePolicy, steps: Int) -> (retained: [[[Int]]], greedy: [Int]) {
        let cache = model.makeCache(policy: policy)
        _ = model.forward(f.context_ids, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        let retained = cache.stores.map { layer in layer.map { s in (0..<s.count).map { s.position($0) } } }
        cache.compressionEnabled = false
        var logits = model.forward(f.question_ids, startPosition: f.context_ids.count, cache: cache, phase: .prefill)
        cache.compressionEnabled = true
        var out: [Int] = []
        for i in 0..<steps {
            let next = logits.withUnsafeBufferPointer { Ops.argmax($0.baseAddress!, count: $0.count) }
            out.append(next)
            if i + 1 < steps {
                logits = model.forward([next], startPosition: f.context_ids.count + f.question_ids.count + i,
                                       cache: cache, phase: .decode)
            }
        }
        return (retained, out)
    }

    func testRetainedPositionsAndGreedyMatchKVPress() throws {
        let f = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: Self.root.appendingPathComponent("expected.json")))
        let model = try LlamaModel(checkpoint: Self.root.appendingPathComponent("model").path)
        let full = runPipeline(model, f, policy: FullCachePolicy(), steps: f.full_greedy.count)
        XCTAssertEqual(full.greedy, f.full_greedy, "full cache greedy differs from transformers")
        var checked = 0
        for c in f.cases {
            let p = try policy(for: c)
            let r = runPipeline(model, f, policy: p, steps: c.greedy.count)
            let name = "\(c.press) r=\(c.compression_ratio) \(c.params)"
            if c.structural_tie {
                // kvpress keeps n_kept tokens of the window, chosen by torch.topk's tie-break: check the set only.
                let w = Int(c.params["window_size"]!)
                for layer in r.retained { for head in layer {
                    XCTAssertEqual(head.count, c.n_kept, name)
                    XCTAssertTrue(head.allSatisfy { $0 >= f.context_ids.count - w }, name)
                } }
                continue
            }
            XCTAssertEqual(r.retained, c.retained, "\(name): retained positions differ")
            XCTAssertEqual(r.greedy, c.greedy, "\(name): greedy continuation differs")
            checked += 1
        }
        XCTAssertEqual(checked, f.cases.count - 1)
    }
}
