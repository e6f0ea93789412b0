// NAtS token types as an eviction mechanism: global, local and sliding-window tokens.
// Paper: Deng & Lindauer, "Neural Attention Search", arXiv 2502.13251.
// Reference: github.com/automl/NeuralAttentionSearch (triton/flashattention_mask_on_chip.py and
// nats_chunk_attention.py: the masks; components/cache/nats_layer_cache.py: types per KV head).
import KVCacheCore

/// Each token gets one of NAtS's three types, per layer and KV head, when it is appended; at every
/// step end (the prefill's end, each decode step) a KV head keeps exactly the tokens a later query
/// may still attend under the reference's mask, and the store drops the rest:
/// - global: always kept;
/// - local: kept until a global token *after* it has attended (the reference: local n is visible
///   to queries m <= g(n), g(n) the first global position >= n), so after step t a local token at
///   p survives iff no global token came in (p, t];
/// - sliding: kept while p > t - window (visible to queries m <= p + window).
/// The first `sinks` positions are global. NAtS learns the types (a score layer per attention
/// layer, trained end to end); KVLab has no trained score layer, so types come from text rules
/// (`NAtSRules`) or from a type file (`NAtSTypeFile`, where learned types can be plugged in).
/// Prefill attention stays dense and eviction runs at its end (kvpress semantics, as every KVLab
/// eviction policy); decode attention then sees exactly the reference mask's tokens. There is no
/// budget: the stored fraction is what the types leave, measured from the stores.
public final class NAtS: CachePolicy, ConfiguredPolicy, ModelShapeChecked, VocabularyBound {
    public enum Source: String, Sendable, CaseIterable { case rules, file }

    public struct Config: PolicyConfig {
        public var window: Int
        public var sinks: Int
        public var source: Source
        /// A type file (source: file), relative to the current directory like model paths.
        public var types: String
        /// Window 256: the reference's `local_seq_max_length` for fine-tuned LLMs (16 in its small
        /// from-scratch models). 4 sinks as StreamingLLM.
        public init(window: Int = 256, sinks: Int = 4, source: Source = .rules, types: String = "") {
            self.window = window; self.sinks = sinks; self.source = source; self.types = types
        }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "nats", family: .eviction,
            summary: "NAtS token types: global tokens stay, local ones until the next global token, the rest within a sliding window ([nats.md](nats.md))",
            defaults: Config(),
            parameters: [
                .int("window", \.window, .atLeast(1), help: "tokens a sliding-window token stays for"),
                .int("sinks", \.sinks, .atLeast(0), help: "first tokens typed global"),
                .choice("source", \.source, help: "where types come from: text rules or a type file"),
                .optionalString("types", \.types, help: "type file (source: file): HDF5 'types' [V] or [layers, kv_heads, V]"),
            ],
            sample: "window: 64, sinks: 4, source: rules",
            check: { c in
                if c.source == .file && c.types.isEmpty {
                    throw PolicyError.invalidParameter(policy: "nats", field: "types", message: "expected a type file with source: file")
                }
                if c.source == .rules && !c.types.isEmpty {
                    throw PolicyError.invalidParameter(policy: "nats", field: "types",
                                                       message: "a type file is read only with source: file (source is rules)")
                }
            },
            // The contract harness writes a [V] type file next to its Loki file (`exampleFile`). Sinks
            // covering the whole run type every token global: the full cache.
            examples: { n, cal in
                n == nil ? [Config(sinks: 1 << 20, source: .file, types: exampleFile(cal))]
                         : [Config(window: n! * 2 / 5, sinks: 4, source: .file, types: exampleFile(cal))]
            })
        /// Where the contract tests' type file lies, next to their Loki calibration (PolicyHarness writes it).
        public static func exampleFile(_ calibration: String) -> String { calibration + ".nats-types.h5" }
        public func make() throws -> CachePolicy { try NAtS(self) }
        /// Evicts at a layer's step end, after it attended: prefill attention stays dense.
        public var prefillSharing: PrefillSharing { .whole }
        public var forcedTokens: [ForcedTokens] { [ForcedTokens("sinks", count: sinks, budget: .tokens(sinks + window))] }
    }

    public let config: Config
    public let file: NAtSTypeFile?
    /// [V] the rules' type per id, once bound to a vocabulary with pieces.
    private var ruleTypes: [NAtSTokenType]?
    /// [layer][kvHead][store index] each stored token's type (follows retention).
    public private(set) var types: [[[NAtSTokenType]]] = []
    /// [layer][kvHead] position of the newest global token appended (-1: none yet).
    private var lastGlobal: [[Int]] = []

    public init(_ config: Config) throws {
        try config.validate()
        self.config = config
        file = config.source == .file
            ? try Self.files.load(config.types, policy: Config.descriptor.name, field: "types", read: NAtSTypeFile.load) : nil
    }

    static let files = PolicyFileCache<NAtSTypeFile>()

    /// A per-head type file must be the model's: the same layers and KV heads.
    public func check(model shape: CacheShape) throws {
        guard let f = file, let h = f.heads else { return }
        guard h.layers == shape.layers, h.kvHeads == shape.kvHeads else {
            throw PolicyError.invalidParameter(policy: "nats", field: "types",
                message: "\(f.path): types for \(h.layers) layers x \(h.kvHeads) KV heads; the model has \(shape.layers) x \(shape.kvHeads)")
        }
    }

    /// Rules need each id's text; a type file needs one type per id of the model's vocabulary.
    public func bind(vocabulary: TokenVocabulary?) throws {
        if let f = file {
            if let v = vocabulary, v.size != f.vocabularySize {
                throw PolicyError.invalidParameter(policy: "nats", field: "types",
                    message: "\(f.path): types for a vocabulary of \(f.vocabularySize) ids; the model's has \(v.size)")
            }
            return
        }
        guard let pieces = vocabulary?.pieces else {
            throw PolicyError.invalidParameter(policy: "nats", field: "source",
                message: "source: rules types tokens by their text and needs the model's tokenizer, which is not available; use source: file")
        }
        ruleTypes = pieces.map(NAtSRules.classify)
    }

    /// Binds the rules to `pieces` directly (tests, callers without a `PolicySpec`).
    public func bind(pieces: [String]) throws { try bind(vocabulary: TokenVocabulary(size: pieces.count, pieces: pieces)) }

    public func bind(shape: CacheShape) {
        if let h = file?.heads {
            precondition(h.layers == shape.layers && h.kvHeads == shape.kvHeads,
                         "\(name): the type file does not fit the stored heads (PolicySpec.make(model:) reports a model mismatch)")
        }
        types = Array(repeating: Array(repeating: [], count: shape.kvHeads), count: shape.layers)
        lastGlobal = Array(repeating: Array(repeating: -1, count: shape.kvHeads), count: shape.layers)
    }

    /// The type of the token `id` at `position` for (layer, KV head).
    @inline(__always)
    func type(layer: Int, head: Int, token id: Int, position: Int) -> NAtSTokenType {
        if position < config.sinks { return .global }
        if let f = file {
            precondition(id < f.vocabularySize, "\(name): token id \(id) is outside the type file's vocabulary (\(f.vocabularySize) ids, \(f.path))")
            return f.type(layer: layer, head: head, token: id)
        }
        guard let r = ruleTypes else { preconditionFailure("\(name): source rules is not bound to a vocabulary (PolicySpec.make(model:vocabulary:))") }
        precondition(id < r.count, "\(name): token id \(id) is outside the vocabulary (\(r.count) ids)")
        return r[id]
    }

    public func didAppend(_ step: LayerStep) {
        guard let ids = step.tokens else {
            preconditionFailure("\(name): the cache was given no token ids (KVCache.attention(tokens:)); NAtS types tokens by id")
        }
        let l = step.layer
        for h in 0..<step.shape.kvHeads {
            precondition(types[l][h].count + step.rows == step.stores[h].count, "\(name): types out of step with the store")
            for r in 0..<step.rows {
                let t = type(layer: l, head: h, token: ids[r], position: step.positions[r])
                types[l][h].append(t)
                if t == .global { lastGlobal[l][h] = max(lastGlobal[l][h], step.positions[r]) }
            }
        }
    }

    /// The tokens a later query may still attend: globals, locals with no global after them, sliding
    /// tokens within the last `window` positions.
    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        let st = step.stores[head], ty = types[step.layer][head], g = lastGlobal[step.layer][head]
        let newest = step.positions.max() ?? 0, oldestSliding = newest - config.window + 1
        var keep: [Int] = []
        keep.reserveCapacity(st.count)
        for j in 0..<st.count {
            let p = st.position(j)
            switch ty[j] {
            case .global: keep.append(j)
            case .local: if p > g { keep.append(j) }
            case .sliding: if p >= oldestSliding { keep.append(j) }
            }
        }
        return keep.count == st.count ? nil : keep
    }

    public func didRetain(layer: Int, head: Int, kept: [Int]) { applyRetention(&types[layer][head], kept: kept) }

    /// One byte of type per stored token.
    public var metadataBytes: Int { types.reduce(0) { $0 + $1.reduce(0) { $0 + $1.count } } }

    public func reset() {
        for l in types.indices { for h in types[l].indices { types[l][h].removeAll(keepingCapacity: true); lastGlobal[l][h] = -1 } }
    }
}
