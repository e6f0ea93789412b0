import Foundation
import XCTest
import KVPolicies
@testable import KVExperiments

/// The NAtS rules on the real model's tokenizer pieces (SmolLM2-135M-Instruct's GGUF metadata, the
/// vocabulary sweeps bind): skipped without the model unless KVLAB_REQUIRE_REAL_MODEL=1.
final class NAtSRealTokenizerTests: XCTestCase {
    static let realModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf"

    func testRulesTypeRealPieces() throws {
        guard FileManager.default.fileExists(atPath: Self.realModel) else {
            if ProcessInfo.processInfo.environment["KVLAB_REQUIRE_REAL_MODEL"] == "1" {
                XCTFail("\(Self.realModel) is missing and KVLAB_REQUIRE_REAL_MODEL=1 (bash scripts/fetch_model.sh)")
                return
            }
            throw XCTSkip("\(Self.realModel) is missing (bash scripts/fetch_model.sh)")
        }
        let vocab = try TokenVocabulary.load(model: Self.realModel, size: 49152)
        let pieces = try XCTUnwrap(vocab.pieces)
        XCTAssertEqual(pieces.count, 49152)
        let codec = try XCTUnwrap(try TokenizerCodec.load(model: Self.realModel))
        let text = "The pass key is 68217. Remember it, please!\nWhat is the pass key? (It is: 68217)"
        let ids = codec.encode(text)
        let typed = ids.map { (piece: pieces[$0], type: NAtSRules.classify(pieces[$0])) }
        // The pieces are text (byte-level BPE decoded: a line break is "\n", not "Ċ"), and they join back to the text.
        XCTAssertEqual(typed.map(\.piece).joined(), text)
        XCTAssertTrue(typed.contains { $0.piece.contains("\n") && $0.type == .global }, "\(typed)")
        for (piece, type) in typed {
            let trimmed = piece.trimmingCharacters(in: .whitespaces)
            if [".", "!", "?", ":"].contains(trimmed) { XCTAssertEqual(type, .global, "'\(piece)'") }
            if [",", "(", ")"].contains(trimmed) { XCTAssertEqual(type, .local, "'\(piece)'") }
            if trimmed.allSatisfy(\.isLetter) || trimmed.allSatisfy(\.isNumber) { XCTAssertEqual(type, .sliding, "'\(piece)'") }
        }
        let counts = Dictionary(grouping: typed, by: \.type).mapValues(\.count)
        XCTAssertGreaterThanOrEqual(counts[.global] ?? 0, 4, "\(typed)")   // ". ! \n ?" at least
        XCTAssertGreaterThanOrEqual(counts[.local] ?? 0, 2, "\(typed)")    // ", (" at least
        XCTAssertGreaterThan(counts[.sliding] ?? 0, typed.count / 2, "\(typed)")
        // Over the whole vocabulary: special tokens (ids 0...16) decode to no text and slide; a few
        // percent of pieces are global or local.
        XCTAssertEqual(pieces[1], "")
        let all = pieces.map(NAtSRules.classify)
        let share = { (t: NAtSTokenType) in Double(all.filter { $0 == t }.count) / Double(all.count) }
        XCTAssertGreaterThan(share(.global), 0.005); XCTAssertLessThan(share(.global), 0.2)
        XCTAssertGreaterThan(share(.local), 0.005); XCTAssertLessThan(share(.local), 0.2)
        print("NAtS rules over SmolLM2's vocabulary: global \(share(.global)), local \(share(.local)), sliding \(share(.sliding))")
    }
}
