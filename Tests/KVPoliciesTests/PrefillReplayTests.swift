import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTestSupport

/// Prefill once, compress many: a dense prefill recorded on the full cache and replayed into a
/// policy's cache must leave exactly the state the policy's own prefill leaves (stores, measured
/// figures, policy state), so that every later decode step gives bit-identical logits. Each policy
/// declares how much of the prefill it shares on its Config (`prefillSharing`); these tests check
/// every registered policy's example configs (lossless and compressing, as the contract tests run
/// them) and every pair of them a stack accepts: a new policy is in these tests by being registered.
final class PrefillReplayTests: XCTestCase {
    typealias H = PolicyHarness
    /// The harness's model (its Loki calibration file fits), with the 96-token prompt in 3 chunks,
    /// its caches in `dtype` (`kv_dtype`: the reference and every policy of a model entry share it).
    static func makeModel(_ dtype: KVDType, spec: String = "synthetic:tiny,std=0.15,seed=3") -> LlamaModel {
        let m = try! ModelSource.parse(spec).load()
        m.prefillChunk = 40
        m.kvDType = dtype
        return m
    }
    static let model = makeModel(.f32)
    static let budget = 40        // tokens kept or read per KV head, of 96 + 8: eviction acts in prefill and decode

    /// Every registered policy's example configs, lossless and compressing.
    static let examples: [PolicySpec] = PolicyRegistry.all.flatMap { d in
        d.exampleSpecs(tokens: nil, calibration: H.calibrationFile) + d.exampleSpecs(tokens: budget, calibration: H.calibrationFile)
    }

    /// The full cache's prefill of the prompt, recorded (hidden states kept at every layer for resumes).
    static func record(_ m: LlamaModel) -> (recording: PrefillRecording, logits: [Float]) {
        let reference = m.makeCache()
        let recorder = PrefillRecorder(startTokens: 0, hiddenLayers: Set(1..<m.config.layers))
        reference.recorder = recorder
        let logits = m.forward(H.prompt, startPosition: 0, cache: reference, phase: .prefill)
        reference.recorder = nil
        return (recorder.finish(), logits)
    }

    /// The prompt's prefill (own, replayed whole, or resumed at a layer), then the decode tokens:
    /// the prefill's last logits followed by every decode step's, and the cache.
    enum Prefill { case own, replay(PrefillRecording, [Float]), resume(PrefillRecording, Int) }
    static func run(_ spec: PolicySpec, _ prefill: Prefill, model m: LlamaModel = model) throws -> ([Float], KVCache) {
        let cache = m.makeCache(policy: try spec.make())
        var logits: [Float]
        switch prefill {
        case .own: logits = m.forward(H.prompt, startPosition: 0, cache: cache, phase: .prefill)
        case .replay(let r, let last): cache.replay(r); logits = last
        case .resume(let r, let layer):
            cache.resume = PrefillResume(recording: r, layer: layer)
            logits = m.forward(H.prompt, startPosition: 0, cache: cache, phase: .prefill)
            cache.resume = nil
        }
        for (i, t) in H.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: H.prompt.count + i, cache: cache, phase: .decode)
        }
        return (logits, cache)
    }

    /// The policy's own prefill and the shared one (replayed whole, or resumed below its first shared
    /// layer, as its declaration says) give the same logits, stores and figures, bit for bit.
    func assertSharedEqualsOwn(_ spec: PolicySpec, _ rec: (recording: PrefillRecording, logits: [Float]), model m: LlamaModel = model,
                               file: StaticString = #filePath, line: UInt = #line) throws {
        let prefix = m.makeCache(policy: try spec.make()).denseLayerPrefix
        let shared: Prefill = prefix == m.config.layers ? .replay(rec.recording, rec.logits) : .resume(rec.recording, prefix)
        let (own, a) = try Self.run(spec, .own, model: m), (replayed, b) = try Self.run(spec, shared, model: m)
        XCTAssertEqual(b.kvDType, m.kvDType, spec.label, file: file, line: line)
        XCTAssertEqual(own.map(\.bitPattern), replayed.map(\.bitPattern), "\(spec.label): logits differ", file: file, line: line)
        // bytesAllocated follows Swift array capacities (allocator rounding) and is not a result.
        var (sa, sb) = (a.stats, b.stats)
        (sa.bytesAllocated, sb.bytesAllocated) = (0, 0)
        XCTAssertEqual(sa, sb, spec.label, file: file, line: line)
        XCTAssertEqual(a.promptLength, b.promptLength, spec.label, file: file, line: line)
        XCTAssertEqual(a.policy.metadataBytes, b.policy.metadataBytes, spec.label, file: file, line: line)
        assertSameStores(a, b, spec.label, file: file, line: line)
    }

    func testRecordingHoldsEveryChunkAndLayer() {
        let (r, _) = Self.record(Self.model)
        let L = Self.model.config.layers
        XCTAssertEqual(r.tokens, H.prompt.count)
        XCTAssertEqual(r.calls.count, 3 * L)                          // 3 chunks x layers
        XCTAssertEqual(r.calls.filter(\.isStepEnd).count, L)         // only the last chunk ends the step
        XCTAssertEqual(r.calls.first?.pendingRows, 56)
        XCTAssertEqual(r.hidden[1]?.count, 3)                          // one hidden state per chunk
    }

    /// What each Config declares agrees with what the cache finds in the live policy: `.whole` has no
    /// replay problem, `.leadingLayers` prefills some layers densely, and a compressing `.none`
    /// config really changes the prefill (the declaration is not just cautious).
    func testDeclarationsAgreeWithTheCache() throws {
        let m = Self.model
        var seen = Set<PrefillSharing>()
        for spec in Self.examples {
            let cache = m.makeCache(policy: try spec.make())
            seen.insert(spec.prefillSharing)
            switch spec.prefillSharing {
            case .whole:
                XCTAssertNil(cache.replayablePrefillProblem, spec.label)
                XCTAssertEqual(cache.denseLayerPrefix, m.config.layers, spec.label)
            case .leadingLayers:
                XCTAssertGreaterThan(cache.denseLayerPrefix, 0, spec.label)
            case .none:
                break
            }
        }
        let refusing = PolicyRegistry.all.flatMap { $0.exampleSpecs(tokens: Self.budget, calibration: H.calibrationFile) }
            .filter { $0.prefillSharing == .none }
        XCTAssertEqual(Set(refusing.map(\.kind)), ["head_pooling", "loki", "svd_heads"])
        for spec in refusing { XCTAssertNotNil(m.makeCache(policy: try spec.make()).replayablePrefillProblem, spec.label) }
        XCTAssertEqual(seen, [.whole, .leadingLayers, .none], "the examples cover every kind of declaration")
    }

    /// Every example of every policy that shares (some of) the prefill: shared equals own, bit for bit.
    func testSharedPrefillEqualsOwnForEveryRegisteredPolicy() throws {
        let rec = Self.record(Self.model)
        let sharing = Self.examples.filter { $0.prefillSharing != .none }
        XCTAssertGreaterThan(sharing.count, 20)
        for spec in sharing { try assertSharedEqualsOwn(spec, rec) }
    }

    /// Every pair of policies' first compressing examples that a stack accepts: the stack
    /// takes the least of its children's declarations, and its shared prefill equals its own.
    func testSharedPrefillEqualsOwnForStacks() throws {
        let rec = Self.record(Self.model)
        let firsts = PolicyRegistry.all.filter { $0.family != .full }
            .map { $0.exampleSpecs(tokens: Self.budget, calibration: H.calibrationFile)[0] }
        var ran = 0
        for (i, a) in firsts.enumerated() { for b in firsts[(i + 1)...] {
            let stack = PolicySpec.stack([a, b])
            guard (try? stack.layout) != nil else { continue }
            XCTAssertEqual(stack.prefillSharing, min(a.prefillSharing, b.prefillSharing), stack.label)
            if stack.prefillSharing == .none { continue }
            try assertSharedEqualsOwn(stack, rec)
            ran += 1
        } }
        XCTAssertGreaterThan(ran, 25)
    }

    /// The replay also holds after eviction really happened (a test that evicts nothing proves little).
    func testSharingPoliciesReallyCompressedTheReplayedPrefill() throws {
        let reference = Self.model.makeCache()
        let recorder = PrefillRecorder(startTokens: 0)
        reference.recorder = recorder
        _ = Self.model.forward(H.prompt, startPosition: 0, cache: reference, phase: .prefill)
        let full = reference.stats.bytesStored
        for spec in [PolicySpec(SnapKV.Config(budget: .tokens(24), window: 8)), PolicySpec(KIVI.Config(bits: 2, groupSize: 8, residual: 16))] {
            let cache = Self.model.makeCache(policy: try spec.make())
            cache.replay(recorder.finish())
            XCTAssertLessThan(cache.stats.bytesStored, full / 2, spec.label)
            // Layer by layer, each held its whole prompt before compressing it.
            XCTAssertGreaterThan(cache.stats.peakBytesStored, cache.stats.bytesStored, spec.label)
            XCTAssertLessThanOrEqual(cache.stats.peakBytesStored, full, spec.label)
        }
    }

    /// Cross-layer sharing on a 5-layer model: the layers below the first one that reads another's
    /// store are replayed and the model resumes from that layer on the recorded hidden state.
    func testResumedPrefillStartsAtTheFirstSharedLayer() throws {
        for dtype in [KVDType.f32, .bf16] { try assertResumes(Self.makeModel(dtype, spec: "synthetic:tiny,layers=5,std=0.15,seed=4")) }
    }

    func assertResumes(_ m: LlamaModel) throws {
        let specs: [(PolicySpec, Int)] = [
            (PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .all)), 1),
            (PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .upperHalf)), 3),
            (.stack([PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .from(2))), PolicySpec(SnapKV.Config(budget: .tokens(24), window: 8))]), 3),
        ]
        let rec = Self.record(m)
        for (spec, layer) in specs {
            XCTAssertEqual(spec.prefillSharing, .leadingLayers, spec.label)
            XCTAssertEqual(m.makeCache(policy: try spec.make()).denseLayerPrefix, layer, spec.label)
            let (own, a) = try Self.run(spec, .own, model: m), (resumed, b) = try Self.run(spec, .resume(rec.recording, layer), model: m)
            XCTAssertEqual(own.map(\.bitPattern), resumed.map(\.bitPattern), "\(spec.label) \(m.kvDType): logits differ")
            var (sa, sb) = (a.stats, b.stats)
            (sa.bytesAllocated, sb.bytesAllocated) = (0, 0)
            XCTAssertEqual(sa, sb, spec.label)
            assertSameStores(a, b, spec.label)
        }
        XCTAssertEqual(m.makeCache(policy: try PolicySpec(HeadPooling.Config(kvHeads: 1)).make()).denseLayerPrefix, 0)
        XCTAssertEqual(m.makeCache().denseLayerPrefix, 5)
    }

    func assertSameStores(_ a: KVCache, _ b: KVCache, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let d = a.shape.headDim
        var ka = [Float](repeating: 0, count: d), kb = ka, va = ka, vb = ka
        for l in 0..<a.shape.layers { for h in 0..<a.shape.kvHeads {
            let x = a.stores[l][h], y = b.stores[l][h]
            XCTAssertEqual(x.count, y.count, "\(label): layer \(l) head \(h) count", file: file, line: line)
            XCTAssertTrue(type(of: Self.elementRows(x.rows)) == type(of: Self.elementRows(y.rows)), "\(label): row types", file: file, line: line)
            XCTAssertEqual(x.payloadBytes, y.payloadBytes, "\(label): layer \(l) head \(h) payload", file: file, line: line)
            guard x.count == y.count else { continue }
            for i in 0..<x.count {
                XCTAssertEqual(x.position(i), y.position(i), "\(label): layer \(l) head \(h) position \(i)", file: file, line: line)
                x.key(i, into: &ka); y.key(i, into: &kb); x.value(i, into: &va); y.value(i, into: &vb)
                if ka.map(\.bitPattern) != kb.map(\.bitPattern) || va.map(\.bitPattern) != vb.map(\.bitPattern) {
                    XCTFail("\(label): layer \(l) head \(h) token \(i) differs", file: file, line: line); return
                }
            }
        } }
    }

    /// The float rows of a store: the rows themselves, or the residual of KIVI codes / merged rows.
    static func elementRows(_ rows: KVRows) -> KVRows {
        if let q = rows as? QuantizedRows { return q.residual }
        if let m = rows as? MergedRows { return m.residual }
        return rows
    }

    /// Half-precision caches (issue 15 item 4): the reference records over its Float16 stores and
    /// every sharing policy's replay into a Float16 cache equals its own Float16 prefill, bit for
    /// bit; the replayed stores hold Float16 rows (codes' and merged rows' residuals too).
    func testSharedPrefillEqualsOwnInFloat16ForEveryRegisteredPolicy() throws {
        let m = Self.makeModel(.f16)
        let rec = Self.record(m)
        XCTAssertEqual(rec.recording.kvDType, .f16)
        XCTAssertNotEqual(rec.logits, Self.record(Self.model).logits, "f16 rows change the prefill (the rounding is real)")
        let sharing = Self.examples.filter { $0.prefillSharing != .none }
        XCTAssertGreaterThan(sharing.count, 20)
        for spec in sharing {
            try assertSharedEqualsOwn(spec, rec, model: m)
            guard spec.prefillSharing == .whole else { continue }
            let cache = m.makeCache(policy: try spec.make())
            cache.replay(rec.recording)
            for layer in cache.stores { for st in layer where st.count > 0 {
                XCTAssertTrue(Self.elementRows(st.rows) is Float16Rows, "\(spec.label): \(type(of: st.rows))")
            } }
        }
    }

    /// A few policies (eviction, KIVI codes, merged rows) in BFloat16.
    func testSharedPrefillEqualsOwnInBFloat16() throws {
        let m = Self.makeModel(.bf16)
        let rec = Self.record(m)
        let specs = Self.examples.filter { ["snapkv", "kivi", "minicache", "h2o"].contains($0.kind) && $0.prefillSharing == .whole }
        XCTAssertGreaterThanOrEqual(specs.count, 4)
        for spec in specs { try assertSharedEqualsOwn(spec, rec, model: m) }
    }
}
