import XCTest
import KVCacheCore
import KVModel
import KVPolicies

/// PyramidKV against the authors' code (KVCache-Factory PyramidKVCluster) and kvpress's formula.
/// Fixture: Tests/KVCacheTests/Fixtures/pyramidkv/expected.json from
/// scripts/fixtures/make_pyramidkv_fixtures.py (schedules replicated from and checked against the
/// reference's update_kv; retained positions computed by the reference's own update_kv).
final class PyramidKVTests: XCTestCase {
    enum Kept: Decodable {
        case layers([Int]), none, asserts
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if c.decodeNil() { self = .none; return }
            if let s = try? c.decode(String.self), s == "asserts" { self = .asserts; return }
            self = .layers(try c.decode([Int].self))
        }
    }
    struct Schedule: Decodable {
        let layers: Int, prompt: Int, capacity: Int, window: Int, beta: Double
        let authors: Kept
        let compression_ratio: Double
        let kvpress: [Int]
        let note: String
    }
    struct Case: Decodable {
        let capacity: Int, window: Int, beta: Double, kernel: Int
        let retained: [[[Int]]]
        let kept: [Int]
    }
    struct Fixture: Decodable {
        let schedules: [Schedule]
        let context_ids: [Int]
        let cases: [Case]
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static let fixture = try! JSONDecoder().decode(Fixture.self, from: Data(contentsOf: root.appendingPathComponent("pyramidkv/expected.json")))

    func shape(layers: Int) -> CacheShape { CacheShape(layers: layers, queryHeads: 4, kvHeads: 2, headDim: 16) }

    /// Every layer's budget equals the reference's (window on top, integer steps, fallbacks).
    func testPerLayerBudgetsFollowTheAuthorsCode() throws {
        for s in Self.fixture.schedules {
            let what = "L=\(s.layers) T=\(s.prompt) C=\(s.capacity) w=\(s.window) (\(s.note))"
            switch s.authors {
            case .asserts:
                XCTAssertThrowsError(try PyramidKV(budget: .tokens(s.capacity), window: s.window), what)
            case .none:
                let p = try PyramidKV(budget: .tokens(s.capacity), window: s.window, beta: s.beta)
                p.bind(shape: shape(layers: s.layers))
                for l in 0..<s.layers { XCTAssertGreaterThanOrEqual(p.capacity(layer: l, length: s.prompt), s.prompt, what) }
            case .layers(let want):
                let p = try PyramidKV(budget: .tokens(s.capacity), window: s.window, beta: s.beta)
                p.bind(shape: shape(layers: s.layers))
                XCTAssertEqual((0..<s.layers).map { p.capacity(layer: $0, length: s.prompt) }, want, what)
            }
        }
    }

    /// At the quickstart's budgets (keep 1/8 and 1/4 of a 1K prompt, window 64, 4 layers) every layer
    /// keeps a different number of tokens; the layers keep the nominal budget on average (up to the
    /// reference's integer steps). Keep 1/16 leaves no prefix budget (C = w): every layer keeps C,
    /// as SnapKV (the reference refuses such a budget).
    func testQuickstartBudgetsMakeAPyramid() throws {
        for T in [1024, 1014] {
            for keep in [0.125, 0.25] {
                let p = try PyramidKV(budget: .ratio(1 - keep), window: 64)
                p.bind(shape: shape(layers: 4))
                let kept = (0..<4).map { p.capacity(layer: $0, length: T) }
                let c = Budget.ratio(1 - keep).capacity(for: T)
                XCTAssertEqual(Set(kept).count, 4, "T=\(T) keep \(keep): \(kept)")
                XCTAssertEqual(kept, kept.sorted(by: >), "budgets must fall from the bottom layer to the top")
                XCTAssertLessThanOrEqual(abs(kept.reduce(0, +) - 4 * c), 6, "T=\(T) keep \(keep): \(kept) vs C = \(c)")
                let reference = Self.fixture.schedules.first { $0.layers == 4 && $0.prompt == T && $0.capacity == c && $0.window == 64 }
                if case .layers(let want)? = reference?.authors { XCTAssertEqual(kept, want) } else { XCTFail("no fixture for T=\(T) C=\(c)") }
            }
            let p = try PyramidKV(budget: .ratio(1 - 0.0625), window: 64)
            p.bind(shape: shape(layers: 4))
            let c = Budget.ratio(1 - 0.0625).capacity(for: T)
            XCTAssertEqual((0..<4).map { p.capacity(layer: $0, length: T) }, [c, c, c, c])
        }
    }

    /// The prompt shorter than 2B: one uniform budget B + w = C in every layer (reference l. 375).
    func testShortPromptFallsBackToUniform() throws {
        let p = try PyramidKV(budget: .tokens(600), window: 8)
        p.bind(shape: shape(layers: 32))
        XCTAssertEqual(Set((0..<32).map { p.capacity(layer: $0, length: 1000) }), [600])
        XCTAssertEqual(Set((0..<32).map { p.capacity(layer: $0, length: 1184) }).count, 32, "T = 2B: the pyramid")
    }

    /// kvpress's formula (variant: kvpress), uniform whenever its condition fails.
    func testKVPressVariantFollowsKVPressFormula() throws {
        for s in Self.fixture.schedules where s.capacity < s.prompt {
            let p = try PyramidKV(budget: .ratio(s.compression_ratio), window: s.window, beta: s.beta, variant: .kvpress)
            p.bind(shape: shape(layers: s.layers))
            XCTAssertEqual((0..<s.layers).map { p.capacity(layer: $0, length: s.prompt) }, s.kvpress, s.note)
        }
    }

    /// Retained positions per layer and KV head equal the reference's update_kv on the same model.
    func testRetainedPositionsMatchTheAuthorsCode() throws {
        let f = Self.fixture
        let model = try LlamaModel(checkpoint: Self.root.appendingPathComponent("kvpress/model").path)
        for c in f.cases {
            let policy = try PyramidKV(budget: .tokens(c.capacity), window: c.window, kernel: c.kernel, beta: c.beta)
            let cache = model.makeCache(policy: policy)
            _ = model.forward(f.context_ids, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
            let retained = cache.stores.map { layer in layer.map { s in (0..<s.count).map { s.position($0) }.sorted() } }
            XCTAssertEqual(retained.map { $0[0].count }, c.kept, "C=\(c.capacity) w=\(c.window)")
            XCTAssertEqual(retained, c.retained, "C=\(c.capacity) w=\(c.window): retained positions differ")
        }
    }

    func testVariantIsInTheLabelAndParsedValuesValidate() throws {
        let spec = PolicySpec.pyramidKV(budget: .ratio(0.875), window: 64, kernel: 5, pooling: .avg, beta: 20)
        XCTAssertTrue(spec.label.contains("variant=authors"), spec.label)
        let kv = PolicySpec.pyramidKV(budget: .ratio(0.875), window: 64, kernel: 5, pooling: .avg, beta: 20, variant: .kvpress)
        XCTAssertTrue(kv.label.contains("variant=kvpress"), kv.label)
        XCTAssertNotEqual(spec, kv)
        XCTAssertThrowsError(try PyramidKV(budget: .tokens(64), window: 64)) { e in
            XCTAssertTrue(e.localizedDescription.contains("'window'"), e.localizedDescription)
        }
        XCTAssertNoThrow(try PyramidKV(budget: .tokens(64), window: 64, variant: .kvpress))   // kvpress keeps SnapKV's rule
    }
}
