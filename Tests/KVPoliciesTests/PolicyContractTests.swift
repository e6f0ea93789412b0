import XCTest
import KVCacheCore
import KVModel
import KVPolicies
import KVTestSupport

/// One contract over every registered policy (`PolicyRegistry.all`, each with its descriptor's
/// example configs) and over every pair of them that a stack accepts (kvpress's
/// tests/default_presses.py, run over its registry). A new policy is in these tests by being registered.
final class PolicyContractTests: XCTestCase {
    typealias H = PolicyHarness
    static let full = H.run(FullCachePolicy())
    static let budget = 40        // tokens kept or read per KV head, of 96 + 8

    func examples(_ d: AnyPolicyDescriptor, tokens: Int?) -> [PolicySpec] {
        d.exampleSpecs(tokens: tokens, calibration: H.calibrationFile)
    }

    func testEveryPolicyHasExamplesOfBothKinds() {
        for d in PolicyRegistry.all {
            XCTAssertFalse(examples(d, tokens: nil).isEmpty, "\(d.name): no config that reproduces the full cache")
            XCTAssertFalse(examples(d, tokens: Self.budget).isEmpty, "\(d.name): no compressing config")
            for spec in examples(d, tokens: nil) + examples(d, tokens: Self.budget) {
                XCTAssertEqual(spec.kind, d.name)
                XCTAssertNoThrow(try spec.make(), spec.label)
            }
        }
    }

    /// Budget >= context (k = T, share factor 1, 16 bits...) gives the full cache's logits; keys
    /// stored in a calibrated basis, or KV heads projected at full rank, give them up to float
    /// rounding of the rotation.
    func testLosslessConfigsGiveTheFullCachesLogits() throws {
        for d in PolicyRegistry.all {
            for spec in examples(d, tokens: nil) {
                let policy = try spec.make()
                let logits = H.run(policy) { cache, _ in XCTAssertEqual(H.storeProblems(cache), [], spec.label) }
                if policy.layout.keyBasis != nil || policy.layout.kvHeadProjection != nil {
                    XCTAssertLessThanOrEqual(H.relativeError(logits, Self.full), 1e-4, spec.label)
                } else {
                    XCTAssertEqual(logits, Self.full, "\(spec.label) changed the logits")
                }
            }
        }
    }

    /// Compressing configs: the stores stay consistent and report what they hold after every step;
    /// they change the output; runs are deterministic; evictions hold their budget (plus the decode
    /// steps a prefill-only schedule appends; PyramidKV's budget is a mean over layers) and really
    /// free memory; selections read fewer values than the full cache (their scoring may read every key).
    func testCompressingConfigsKeepTheContract() throws {
        let fullCache = H.model.makeCache()
        _ = H.model.forward(H.prompt, startPosition: 0, cache: fullCache, phase: .prefill)
        for d in PolicyRegistry.all where d.family != .full {
            for spec in examples(d, tokens: Self.budget) {
                var afterPrefill = 0, valuesRead = 0
                let logits = H.run(try spec.make()) { cache, steps in
                    XCTAssertEqual(H.storeProblems(cache), [], "\(spec.label) after \(steps) decode steps")
                    if d.family == .eviction {
                        let bound = (Self.budget + steps) * cache.shape.layers
                        for (h, n) in H.heldPerHead(cache).enumerated() {
                            XCTAssertLessThanOrEqual(n, bound, "\(spec.label): head \(h) holds \(n) over all layers after \(steps) steps")
                        }
                    }
                    if steps == 0 { afterPrefill = cache.stats.bytesStored }
                    valuesRead = cache.stats.decodeValueBytesRead
                }
                XCTAssertNotEqual(logits, Self.full, "\(spec.label) changed nothing")
                XCTAssertEqual(H.run(try spec.make()), logits, "\(spec.label) is not deterministic")
                if d.family == .eviction {
                    let ratio = Double(afterPrefill) / Double(fullCache.stats.bytesStored)
                    XCTAssertGreaterThan(ratio, 0, spec.label)
                    XCTAssertLessThanOrEqual(ratio, Double(Self.budget) / Double(H.prompt.count) + 1e-9,
                                             "\(spec.label) stores \(ratio) of the full cache")
                }
                if d.family == .selection { XCTAssertLessThan(valuesRead, Self.fullValuesRead, "\(spec.label) reads as many values as the full cache") }
            }
        }
    }

    static let fullValuesRead: Int = {
        var read = 0
        _ = PolicyHarness.run(FullCachePolicy()) { cache, _ in read = cache.stats.decodeValueBytesRead }
        return read
    }()

    /// Every ordered pair of registered policies as a stack: either the layouts refuse it with a
    /// message naming the policy that conflicts, or the stack runs with consistent stores and
    /// finite output.
    func testPairwiseStacksComposeOrAreRefused() throws {
        let policies = PolicyRegistry.all.filter { $0.family != .full }
        var ran = 0, refused = 0
        for a in policies {
            for b in policies {
                let stack = PolicySpec.stack([examples(a, tokens: Self.budget)[0], examples(b, tokens: Self.budget)[0]])
                do { _ = try stack.layout } catch {
                    let message = error.localizedDescription
                    XCTAssertTrue(message.contains(a.name) || message.contains(b.name), message)
                    XCTAssertThrowsError(try stack.make(), stack.label)
                    refused += 1
                    continue
                }
                let logits = H.run(try stack.make()) { cache, steps in
                    XCTAssertEqual(H.storeProblems(cache), [], "\(stack.label) after \(steps) decode steps")
                }
                XCTAssertTrue(logits.allSatisfy(\.isFinite), stack.label)
                ran += 1
            }
        }
        XCTAssertGreaterThan(ran, policies.count * policies.count / 2, "most pairs compose")
        XCTAssertGreaterThan(refused, 0, "some pairs conflict (MiniCache + KIVI...)")
    }

    /// Decode-time eviction with slot reuse keeps exactly what in-order compaction would keep.
    func testStreamingDuringDecodeKeepsSinksAndNewest() throws {
        var last: KVCache?
        _ = H.run(try StreamingLLM(budget: .tokens(24), sinks: 4)) { cache, _ in last = cache }
        let expected = Set(0..<4).union(Set((H.context - 20)..<H.context))
        for layer in try XCTUnwrap(last).stores { for s in layer {
            XCTAssertEqual(Set((0..<s.count).map { s.position($0) }), expected)
        } }
    }
}
