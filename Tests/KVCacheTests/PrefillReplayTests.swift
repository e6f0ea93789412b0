import XCTest
import KVCache
import KVModel
import KVPolicies

/// Prefill once, compress many: a dense prefill recorded on the full cache and replayed into a
/// policy's cache must leave exactly the state the policy's own prefill leaves (stores, measured
/// figures, policy state), so that every later decode step gives bit-identical logits.
final class PrefillReplayTests: XCTestCase {
    static let model: LlamaModel = {
        let m = try! ModelSource.parse("synthetic:tiny,std=0.15,seed=3").load()
        m.prefillChunk = 40                      // the 100-token prompt runs in 3 chunks
        return m
    }()
    static let prompt = (0..<100).map { ($0 * 37 + 11) % 256 }
    static let decodeTokens = [5, 77, 130, 9, 200, 31, 64, 18, 99, 3]

    /// Every policy kind that declares it shares the dense prefill, with small budgets so that
    /// eviction, quantization and merging all act at the prefill's step end and while decoding.
    static let sharing: [PolicySpec] = {
        let b = Budget.tokens(24), always = EvictionSchedule(.always), once = EvictionSchedule(.prefill)
        return [
            .streamingLLM(budget: b, sinks: 4, schedule: always),
            .streamingLLM(budget: b, sinks: 4, schedule: always, positionShift: true),
            .h2o(budget: b, recentFraction: 0.5, scoring: .causal, schedule: always),
            .h2o(budget: b, recentFraction: 0, scoring: .observed, schedule: once),
            .snapKV(budget: b, window: 8, kernel: 5, pooling: .avg),
            .pyramidKV(budget: b, window: 8, kernel: 5, pooling: .avg, beta: 20),
            .tova(budget: b, schedule: always),
            .knorm(budget: .ratio(0.5), schedule: always),
            .quest(budget: 16, pageSize: 8, denseLayers: 0, gqa: .kvGroup),
            .oracleTopK(topK: .tokens(12), gqa: .queryHead),
            .kivi(bits: 2, groupSize: 8, residual: 16),
            .miniCache(startLayer: nil, t: 0.6, retainFraction: 0.1),
            .stack([.snapKV(budget: b, window: 8, kernel: 5, pooling: .avg), .kivi(bits: 4, groupSize: 8, residual: 16)]),
            .stack([.streamingLLM(budget: .ratio(0.5), sinks: 4, schedule: always), .miniCache(startLayer: nil, t: 0.6, retainFraction: 0.05)]),
            .full,
        ]
    }()

    /// Runs the prompt (own prefill, or a replay of `recording`) then the decode tokens; returns
    /// the prefill's last logits followed by every decode step's logits, and the cache.
    func run(_ spec: PolicySpec, replaying recording: PrefillRecording?, lastLogits: [Float] = []) throws -> ([Float], KVCache) {
        let m = Self.model
        let cache = m.makeCache(policy: try spec.make())
        var logits: [Float]
        if let recording {
            cache.replay(recording)
            logits = lastLogits
        } else {
            logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
        }
        for (i, t) in Self.decodeTokens.enumerated() {
            logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
        }
        return (logits, cache)
    }

    func testReplayEqualsOwnPrefillBitForBit() throws {
        let m = Self.model
        let reference = m.makeCache()
        let recorder = PrefillRecorder(startTokens: 0)
        reference.recorder = recorder
        let denseLogits = m.forward(Self.prompt, startPosition: 0, cache: reference, phase: .prefill)
        reference.recorder = nil
        let recording = recorder.finish()
        XCTAssertEqual(recording.tokens, Self.prompt.count)
        XCTAssertEqual(recording.calls.count, 3 * m.config.layers)                 // 3 chunks x layers
        XCTAssertEqual(recording.calls.filter(\.isStepEnd).count, m.config.layers)  // only the last chunk ends the step
        XCTAssertEqual(recording.calls.first?.pendingRows, 60)

        for spec in Self.sharing {
            XCTAssertTrue(spec.sharesDensePrefill, spec.label)
            let (own, a) = try run(spec, replaying: nil)
            let (replayed, b) = try run(spec, replaying: recording, lastLogits: denseLogits)
            XCTAssertEqual(own.count, replayed.count, spec.label)
            XCTAssertTrue(zip(own, replayed).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(spec.label): logits differ")
            // bytesAllocated follows Swift array capacities (allocator rounding) and is not a result.
            var (sa, sb) = (a.stats, b.stats)
            (sa.bytesAllocated, sb.bytesAllocated) = (0, 0)
            XCTAssertEqual(sa, sb, spec.label)
            XCTAssertEqual(a.promptLength, b.promptLength, spec.label)
            XCTAssertEqual(a.policy.metadataBytes, b.policy.metadataBytes, spec.label)
            assertSameStores(a, b, spec.label)
        }
    }

    /// The replay also holds after eviction really happened (a test that evicts nothing proves little).
    func testSharingPoliciesReallyCompressedTheReplayedPrefill() throws {
        let reference = Self.model.makeCache()
        let recorder = PrefillRecorder(startTokens: 0)
        reference.recorder = recorder
        _ = Self.model.forward(Self.prompt, startPosition: 0, cache: reference, phase: .prefill)
        let full = reference.stats.bytesStored
        for spec in [PolicySpec.snapKV(budget: .tokens(24), window: 8, kernel: 5, pooling: .avg), .kivi(bits: 2, groupSize: 8, residual: 16)] {
            let cache = Self.model.makeCache(policy: try spec.make())
            cache.replay(recorder.finish())
            XCTAssertLessThan(cache.stats.bytesStored, full / 2, spec.label)
            // Layer by layer, each held its whole prompt before compressing it.
            XCTAssertGreaterThan(cache.stats.peakBytesStored, cache.stats.bytesStored, spec.label)
            XCTAssertLessThanOrEqual(cache.stats.peakBytesStored, full, spec.label)
        }
    }

    /// A policy that changes the prefill itself refuses a replay: the runtime check agrees with
    /// the declaration of every policy kind.
    func testPoliciesThatChangeThePrefillAreNotReplayable() throws {
        let m = Self.model
        for spec in Self.sharing {
            XCTAssertNil(m.makeCache(policy: try spec.make()).replayablePrefillProblem, spec.label)
        }
        let own: [PolicySpec] = [.cla(shareFactor: 2, layers: .all, map: nil), .headPooling(kvHeads: 1)]
        XCTAssertEqual(PolicySpec.headPooling(kvHeads: 1).prefillSharing, .none)
        for spec in own {
            XCTAssertFalse(spec.sharesDensePrefill, spec.label)
            XCTAssertNotNil(m.makeCache(policy: try spec.make()).replayablePrefillProblem, spec.label)
        }
        XCTAssertFalse(PolicySpec.loki(calibration: "x.h5", rank: .fraction(0.25), topK: .fraction(0.25), gqa: .kvGroup, phases: .decode).sharesDensePrefill)
        let cal = SelectionFixtures.calibration(m)
        for phases in Loki.Phases.allCases {
            let loki = try Loki(calibration: cal, rank: .fraction(0.5), topK: .tokens(8), phases: phases)
            XCTAssertNotNil(m.makeCache(policy: loki).replayablePrefillProblem, "loki \(phases)")
        }
        XCTAssertFalse(PolicySpec.stack([.snapKV(budget: .tokens(8), window: 4, kernel: 3, pooling: .avg), .headPooling(kvHeads: 1)]).sharesDensePrefill)
    }

    /// Cross-layer sharing: the layers below the first one that reads another's store are replayed
    /// and the model resumes from that layer on the recorded hidden state; the result equals the
    /// policy's own prefill bit for bit.
    func testResumedPrefillEqualsOwnPrefillBitForBit() throws {
        let m = try ModelSource.parse("synthetic:tiny,layers=5,std=0.15,seed=4").load()
        m.prefillChunk = 40
        let specs: [(PolicySpec, Int)] = [(.cla(shareFactor: 2, layers: .all, map: nil), 1),
                                          (.cla(shareFactor: 2, layers: .upperHalf, map: nil), 3),
                                          (.stack([.cla(shareFactor: 2, layers: .from(2), map: nil),
                                                   .snapKV(budget: .tokens(24), window: 8, kernel: 5, pooling: .avg)]), 3)]
        let reference = m.makeCache()
        let recorder = PrefillRecorder(startTokens: 0, hiddenLayers: Set(specs.map(\.1)))
        reference.recorder = recorder
        _ = m.forward(Self.prompt, startPosition: 0, cache: reference, phase: .prefill)
        reference.recorder = nil
        let recording = recorder.finish()
        XCTAssertEqual(recording.hidden[3]?.count, 3)                                  // one per chunk
        for (spec, layer) in specs {
            XCTAssertEqual(spec.prefillSharing, .leadingLayers, spec.label)
            func run(resume: Bool) throws -> ([Float], KVCache) {
                let cache = m.makeCache(policy: try spec.make())
                XCTAssertEqual(cache.denseLayerPrefix, layer, spec.label)
                if resume { cache.resume = PrefillResume(recording: recording, layer: layer) }
                var logits = m.forward(Self.prompt, startPosition: 0, cache: cache, phase: .prefill)
                cache.resume = nil
                for (i, t) in Self.decodeTokens.enumerated() {
                    logits += m.forward([t], startPosition: Self.prompt.count + i, cache: cache, phase: .decode)
                }
                return (logits, cache)
            }
            let (own, a) = try run(resume: false), (resumed, b) = try run(resume: true)
            XCTAssertEqual(own.map(\.bitPattern), resumed.map(\.bitPattern), "\(spec.label): logits differ")
            var (sa, sb) = (a.stats, b.stats)
            (sa.bytesAllocated, sb.bytesAllocated) = (0, 0)
            XCTAssertEqual(sa, sb, spec.label)
            assertSameStores(a, b, spec.label)
        }
        XCTAssertEqual(m.makeCache(policy: try PolicySpec.headPooling(kvHeads: 1).make()).denseLayerPrefix, 0)
        XCTAssertEqual(m.makeCache().denseLayerPrefix, 5)
    }

    func assertSameStores(_ a: KVCache, _ b: KVCache, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let d = a.shape.headDim
        var ka = [Float](repeating: 0, count: d), kb = ka, va = ka, vb = ka
        for l in 0..<a.shape.layers { for h in 0..<a.shape.kvHeads {
            let x = a.stores[l][h], y = b.stores[l][h]
            XCTAssertEqual(x.count, y.count, "\(label): layer \(l) head \(h) count", file: file, line: line)
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
}
