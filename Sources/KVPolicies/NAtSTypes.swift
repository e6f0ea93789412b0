// Support file for NAtS (Deng & Lindauer, "Neural Attention Search", arXiv 2502.13251; reference
// github.com/automl/NeuralAttentionSearch): the token types, the text rules that stand in for the
// learned scores, the loadable type file, and the vocabulary a policy that types tokens is bound to.
import Foundation
import KVHDF5

/// NAtS's three token types, numbered as the reference's one-hot `token_states_info` [.., 3] orders
/// them (index 0 global, 1 local, 2 sliding window).
public enum NAtSTokenType: UInt8, Sendable, CaseIterable {
    /// Kept for the rest of the sequence.
    case global = 0
    /// Kept until the next global token after it has attended (the reference's mask: local token n
    /// is visible to queries m <= g(n), g(n) the first global position >= n).
    case local = 1
    /// Kept while within the last `window` tokens (visible to queries m <= n + window).
    case sliding = 2

    public var name: String { ["global", "local", "sliding"][Int(rawValue)] }
}

/// The type rules used without NAtS's learned scores (docs/nats.md): a token whose text holds a
/// line break or a sentence or clause end (. ! ? ; : and their full-width forms) is global; one
/// holding any other Unicode punctuation (, ' " ( ) - ...) is local; every other token (words,
/// digits, symbols, special tokens, which decode to no text) slides. The first `sinks` positions
/// are global whatever their text (attention sinks; `NAtS`).
public enum NAtSRules {
    static let sentenceEnds: Set<Character> = [".", "!", "?", ";", ":", "。", "！", "？", "；", "："]

    public static func classify(_ piece: String) -> NAtSTokenType {
        if piece.contains(where: { $0.isNewline || sentenceEnds.contains($0) }) { return .global }
        if piece.unicodeScalars.contains(where: { CharacterSet.punctuationCharacters.contains($0) }) { return .local }
        return .sliding
    }
}

/// The model's vocabulary as a policy that types tokens sees it: its size (token ids are below it)
/// and, when the model has a tokenizer, each id's decoded text. Built once per model by the runner.
public struct TokenVocabulary: Sendable {
    public let size: Int
    /// [size] the text of each id alone; nil when the model has no tokenizer.
    public let pieces: [String]?
    public init(size: Int, pieces: [String]? = nil) {
        precondition(pieces.map { $0.count == size } ?? true, "one piece per token id")
        self.size = size; self.pieces = pieces
    }
    /// Every id's text by `piece` (e.g. a tokenizer's decode of the id alone).
    public init(size: Int, piece: (Int) -> String) { self.init(size: size, pieces: (0..<size).map(piece)) }
}

/// A policy that reads token ids (`LayerStep.tokens`) and must know the model's vocabulary before it
/// runs: `PolicySpec.make(model:vocabulary:)` binds it, or fails with the policy's error.
public protocol VocabularyBound: AnyObject {
    /// Binds the vocabulary; throws (naming the field) when the policy cannot use it. `nil`: the
    /// model's vocabulary is not known; a policy that needs it throws.
    func bind(vocabulary: TokenVocabulary?) throws
}

/// A loadable type table (learned NAtS types, or any other assignment): HDF5, attribute
/// `format = kvlab-nats-types`, dataset `types` (any integer type) holding 0 = global, 1 = local,
/// 2 = sliding per vocabulary id: shape [V] (every layer and KV head alike) or [L, Hkv, V] (per
/// layer and KV head, as the reference assigns types per KV head).
public struct NAtSTypeFile: Sendable {
    public static let format = "kvlab-nats-types"
    public let path: String
    public let vocabularySize: Int
    /// nil: one table for every layer and KV head.
    public let heads: (layers: Int, kvHeads: Int)?
    /// [V] or [L, Hkv, V] raw types (validated).
    public let types: [UInt8]

    public init(path: String = "", vocabularySize: Int, heads: (layers: Int, kvHeads: Int)? = nil, types: [UInt8]) {
        precondition(types.count == vocabularySize * (heads.map { $0.layers * $0.kvHeads } ?? 1), "types: [V] or [L, Hkv, V]")
        self.path = path; self.vocabularySize = vocabularySize; self.heads = heads; self.types = types
    }

    /// The type of `token` at (layer, KV head).
    @inline(__always)
    public func type(layer: Int, head: Int, token: Int) -> NAtSTokenType {
        let row = heads.map { (layer * $0.kvHeads + head) * vocabularySize } ?? 0
        return NAtSTokenType(rawValue: types[row + token])!
    }

    public func save(to path: String) throws {
        let shape = heads.map { [$0.layers, $0.kvHeads, vocabularySize] } ?? [vocabularySize]
        try H5File.writeAtomically(to: path) { f in
            _ = try f.root.write("types", uint8s: types, shape: shape, gzip: 4)
            try f.root.setAttribute("format", Self.format)
        }
    }

    /// Reads a type file; every error names the file and what was expected.
    public static func load(_ path: String) throws -> NAtSTypeFile {
        func bad(_ m: String) -> PolicyError { .invalidParameter(policy: "nats", field: "types", message: "\(path): \(m)") }
        guard FileManager.default.fileExists(atPath: path) else {
            throw bad("file not found; expected an HDF5 file with a 'types' dataset [V] or [layers, kv_heads, V] (docs/nats.md)")
        }
        guard H5File.isHDF5(path) else { throw bad("not an HDF5 file") }
        let f = try openPolicyFile(path, format: format, what: "NAtS type file", writer: "docs/nats.md (h5py)", bad: bad)
        defer { try? f.close() }
        guard try f.root.memberNames().contains("types") else { throw bad("missing dataset 'types' ([V] or [layers, kv_heads, V])") }
        let (values, shape) = try f.root.readInt64s("types")
        guard shape.count == 1 || shape.count == 3, shape.allSatisfy({ $0 > 0 }) else {
            throw bad("dataset 'types' has shape \(shape); expected [V] or [layers, kv_heads, V]")
        }
        let V = shape.last!
        if let i = values.firstIndex(where: { $0 < 0 || $0 > 2 }) {
            let where_ = shape.count == 1 ? "token id \(i)" : "layer \(i / V / shape[1]), KV head \(i / V % shape[1]), token id \(i % V)"
            throw bad("\(where_) has type \(values[i]); expected 0 (global), 1 (local) or 2 (sliding)")
        }
        return NAtSTypeFile(path: path, vocabularySize: V, heads: shape.count == 3 ? (shape[0], shape[1]) : nil,
                            types: values.map { UInt8($0) })
    }
}
