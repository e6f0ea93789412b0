import XCTest
import KVCacheCore
import KVHDF5
import KVModel
import KVPolicies
import KVTensor
import KVTestSupport

/// nats: after the prefill and after every decode step each (layer, KV head) store holds exactly the
/// positions a brute-force reading of the reference's mask says a later query may still attend
/// (given that head's type sequence), the types follow the stores through every retention, the
/// rules type text as documented, and bad type files fail naming the file and what is wrong.
final class NAtSTests: XCTestCase {
    typealias H = PolicyHarness
    static let dir: String = {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("nats-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }()

    /// Brute force from the reference's mask (flashattention_mask_on_chip.py): query m may attend key
    /// n <= m iff n is global, or n is local and m <= g(n) (g(n) the first global position >= n; none:
    /// infinity), or n slides and m <= n + window. After step t, a store must hold exactly the n <= t
    /// that some query m > t may attend.
    static func survivors(_ types: [NAtSTokenType], after t: Int, window: Int) -> Set<Int> {
        Set((0...t).filter { n in
            switch types[n] {
            case .global: return true
            case .sliding: return n + window >= t + 1
            case .local:
                let g = (n..<types.count).first { types[$0] == .global } ?? Int.max   // over the whole sequence
                return g >= t + 1
            }
        })
    }

    /// A per-(layer, KV head) type table with every type common: seeded.
    func perHeadFile() throws -> NAtSTypeFile {
        let c = H.model.config, V = c.vocabSize
        var rng = SeededRandom(seed: 11)
        let types: [UInt8] = (0..<(c.layers * c.kvHeads * V)).map { _ in
            let u = rng.nextUniform(); return u < 0.12 ? 0 : u < 0.45 ? 1 : 2
        }
        let f = NAtSTypeFile(vocabularySize: V, heads: (c.layers, c.kvHeads), types: types)
        try f.save(to: Self.dir + "/per-head.h5")
        return try NAtSTypeFile.load(Self.dir + "/per-head.h5")
    }

    func testStoresHoldWhatTheMaskLetsLaterQueriesAttend() throws {
        let file = try perHeadFile()
        let shape = H.model.cacheShape
        let sequence = H.prompt + H.decodeTokens
        for (window, sinks) in [(10, 4), (3, 0), (40, 2)] {
            let policy = try XCTUnwrap(try PolicySpec(NAtS.Config(window: window, sinks: sinks, source: .file, types: file.path))
                .make(model: shape) as? NAtS)
            var checked = 0, dropped = 0
            _ = H.run(policy) { cache, steps in
                let t = H.prompt.count + steps - 1            // the newest position
                XCTAssertEqual(H.storeProblems(cache), [])
                for l in 0..<shape.layers {
                    for h in 0..<shape.kvHeads {
                        let types = sequence.enumerated().map { p, id in p < sinks ? NAtSTokenType.global : file.type(layer: l, head: h, token: id) }
                        let store = cache.stores[l][h]
                        let held = (0..<store.count).map { store.position($0) }
                        let expected = Self.survivors(types, after: t, window: window)
                        XCTAssertEqual(Set(held), expected, "window \(window), sinks \(sinks): layer \(l) head \(h) after \(steps) decode steps")
                        XCTAssertEqual(policy.types[l][h], held.map { types[$0] }, "types follow the store (layer \(l) head \(h))")
                        checked += 1; dropped += t + 1 - held.count
                    }
                }
            }
            XCTAssertEqual(checked, (H.decodeTokens.count + 1) * shape.layers * shape.kvHeads)
            XCTAssertGreaterThan(dropped, 0, "window \(window) evicted nothing")
        }
    }

    /// The sweep's shared prefill hands the recorded token ids to a replayed cache: the same stores.
    func testReplayedPrefillTypesTheSameTokens() throws {
        let spec = PolicySpec(NAtS.Config(window: 12, sinks: 4, source: .file, types: try perHeadFile().path))
        let m = H.model
        let reference = m.makeCache(), recorder = PrefillRecorder(startTokens: 0)
        reference.recorder = recorder
        _ = m.forward(H.prompt, startPosition: 0, cache: reference, phase: .prefill)
        let own = m.makeCache(policy: try spec.make()), replayed = m.makeCache(policy: try spec.make())
        _ = m.forward(H.prompt, startPosition: 0, cache: own, phase: .prefill)
        replayed.replay(recorder.finish())
        for l in 0..<m.cacheShape.layers { for h in 0..<m.cacheShape.kvHeads {
            let a = own.stores[l][h], b = replayed.stores[l][h]
            XCTAssertEqual((0..<a.count).map { a.position($0) }, (0..<b.count).map { b.position($0) })
            XCTAssertLessThan(a.count, H.prompt.count)
        } }
    }

    func testRules() {
        let cases: [(String, NAtSTokenType)] = [
            (".", .global), (" end.", .global), ("\n", .global), ("\n\n", .global), ("?", .global), ("!\"", .global),
            (";", .global), (":", .global), ("。", .global),
            (",", .local), (" (", .local), ("'s", .local), ("-", .local), ("\"", .local),
            (" the", .sliding), ("123", .sliding), ("", .sliding), (" +", .sliding), ("$", .sliding),
        ]
        for (piece, type) in cases { XCTAssertEqual(NAtSRules.classify(piece), type, "'\(piece)'") }
    }

    /// Rules bound to pieces: every token whose text is a sentence end is kept, commas until the next
    /// sentence end, words only within the window.
    func testRulesDriveEviction() throws {
        let V = H.model.config.vocabSize
        let pieces = (0..<V).map { $0 % 10 == 0 ? "." : $0 % 10 == 1 ? "," : " w\($0)" }
        let policy = try NAtS(NAtS.Config(window: 8, sinks: 2))
        XCTAssertThrowsError(try PolicySpec(policy.config).make(model: H.model.cacheShape)) { e in
            XCTAssertTrue(e.localizedDescription.contains("needs the model's tokenizer"), e.localizedDescription)
        }
        try policy.bind(pieces: pieces)
        let sequence = H.prompt + H.decodeTokens
        let types = sequence.enumerated().map { p, id in p < 2 ? NAtSTokenType.global : NAtSRules.classify(pieces[id]) }
        _ = H.run(policy) { cache, steps in
            let t = H.prompt.count + steps - 1
            let s = cache.stores[1][0]
            XCTAssertEqual(Set((0..<s.count).map { s.position($0) }), Self.survivors(types, after: t, window: 8))
        }
    }

    func testTypeFileErrorsNameTheFileAndWhatIsWrong() throws {
        func message(_ path: String) -> String {
            do { _ = try NAtS(NAtS.Config(source: .file, types: path)); return "" } catch { return error.localizedDescription }
        }
        let missing = Self.dir + "/none.h5"
        XCTAssertTrue(message(missing).contains("\(missing): file not found"), message(missing))
        let text = Self.dir + "/text.h5"
        try "not hdf5".write(toFile: text, atomically: true, encoding: .utf8)
        XCTAssertTrue(message(text).contains("not an HDF5 file"), message(text))
        let other = Self.dir + "/other.h5"
        try HeadScoreFile(layers: 1, queryHeads: 1, maps: ["retrieval_score": [1]]).save(to: other)
        XCTAssertTrue(message(other).contains("format != kvlab-nats-types"), message(other))
        func write(_ name: String, _ body: (H5Group) throws -> Void) throws -> String {
            let p = Self.dir + "/" + name
            try H5File.writeAtomically(to: p) { f in try f.root.setAttribute("format", NAtSTypeFile.format); try body(f.root) }
            return p
        }
        let empty = try write("empty.h5") { _ in }
        XCTAssertTrue(message(empty).contains("missing dataset 'types'"), message(empty))
        let rank2 = try write("rank2.h5") { _ = try $0.write("types", uint8s: [0, 1, 2, 0], shape: [2, 2]) }
        XCTAssertTrue(message(rank2).contains("shape [2, 2]; expected [V] or [layers, kv_heads, V]"), message(rank2))
        let unknown = try write("unknown.h5") { _ = try $0.write("types", int32s: [0, 1, 2, 3, 1], shape: [5]) }
        XCTAssertTrue(message(unknown).contains("token id 3 has type 3; expected 0 (global), 1 (local) or 2 (sliding)"), message(unknown))
        let unknownHead = try write("unknown-head.h5") { _ = try $0.write("types", int32s: [0, 1, 2, 0, -1, 1], shape: [1, 2, 3]) }
        XCTAssertTrue(message(unknownHead).contains("layer 0, KV head 1, token id 1 has type -1"), message(unknownHead))

        // Vocabulary size and per-head shape are checked against the model.
        let small = Self.dir + "/small.h5"
        try NAtSTypeFile(vocabularySize: 7, types: Array(repeating: 2, count: 7)).save(to: small)
        let spec = PolicySpec(NAtS.Config(source: .file, types: small))
        XCTAssertNoThrow(try spec.make())
        XCTAssertThrowsError(try spec.make(model: H.model.cacheShape) { TokenVocabulary(size: H.model.config.vocabSize) }) { e in
            XCTAssertTrue(e.localizedDescription.contains("\(small): types for a vocabulary of 7 ids; the model's has \(H.model.config.vocabSize)"),
                          e.localizedDescription)
        }
        let heads = Self.dir + "/heads.h5"
        let V = H.model.config.vocabSize
        try NAtSTypeFile(vocabularySize: V, heads: (1, 1), types: Array(repeating: 2, count: V)).save(to: heads)
        XCTAssertThrowsError(try PolicySpec(NAtS.Config(source: .file, types: heads)).make(model: H.model.cacheShape)) { e in
            XCTAssertTrue(e.localizedDescription.contains("types for 1 layers x 1 KV heads"), e.localizedDescription)
        }
        // source and types must agree.
        XCTAssertThrowsError(try NAtS(NAtS.Config(source: .file))) { e in
            XCTAssertTrue(e.localizedDescription.contains("expected a type file with source: file"), e.localizedDescription)
        }
        XCTAssertThrowsError(try NAtS(NAtS.Config(source: .rules, types: small))) { e in
            XCTAssertTrue(e.localizedDescription.contains("read only with source: file"), e.localizedDescription)
        }
    }
}
