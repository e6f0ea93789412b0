// SVD KV-head compression: fewer KV heads by low-rank projection fitted on calibration text.
// Paper: Yu et al., "Effectively Compress KV Heads for LLM", arXiv 2406.07056 (no public code found;
// the RoPE-compatible key map here is the least-squares RoPE-commuting one, see KVHeadProjection).
// The baseline is mean pooling (HeadPooling.swift, the GQA paper's conversion).
import Foundation
import KVCacheCore
import KVHDF5

/// Stores the calibration's number of KV heads: each stored head is the low-rank projection of its
/// group of adjacent model heads, queries and attention outputs mapped accordingly (exactly what
/// folding the projection into W_k, W_v, W_q and W_o would do, applied in the cache like head
/// pooling, so runs keep the unmodified model's full cache as their reference). No uptraining.
public final class SVDHeads: CachePolicy, ConfiguredPolicy {
    /// Which caches get the fitted projection; the other is mean-pooled (a diagnostic: `keys` = SVD
    /// keys + mean-pooled values, `values` = mean-pooled keys + SVD values).
    public enum Part: String, Hashable, Sendable, CaseIterable { case both, keys, values }

    public struct Config: PolicyConfig {
        /// A `kvlab calibrate svd-heads` file, relative to the current directory like model paths.
        public var calibration: String
        public var part: Part
        public init(calibration: String, part: Part = .both) { self.calibration = calibration; self.part = part }
        public static let descriptor = PolicyDescriptor<Config>(
            name: "svd_heads", family: .sharing, summary: "stores the calibration's fewer KV heads, each a low-rank (RoPE-compatible for keys) projection of its group, instead of the mean ([heads.md](heads.md))",
            defaults: Config(calibration: ""),
            parameters: [
                .string("calibration", \.calibration, required: true, help: "written by `kvlab calibrate svd-heads` (it sets the stored KV heads)"),
                .choice("part", \.part, help: "which caches are projected; the other is mean-pooled (keys, values: a diagnostic)"),
            ],
            sample: "calibration: svd_kv1.h5",
            // The contract harness writes its SVD files next to its Loki file (`exampleFile`): the
            // model's own head count (a rotation: the full cache up to rounding), and half of it.
            examples: { n, cal in
                n == nil ? [Config(calibration: exampleFile(cal, kvHeads: 2))]
                         : [Config(calibration: exampleFile(cal, kvHeads: 1)), Config(calibration: exampleFile(cal, kvHeads: 1), part: .keys)]
            })
        /// Where the contract tests' SVD calibration with `kvHeads` stored heads lies, next to their
        /// Loki calibration `calibration` (PolicyHarness writes both).
        public static func exampleFile(_ calibration: String, kvHeads: Int) -> String { calibration + ".svd_heads-kv\(kvHeads).h5" }
        /// The calibration's head count and projection (read when asked: a file that cannot be read
        /// gives no layout here and fails `make()` with its error).
        public var layout: StorageLayout {
            StorageLayout(owner: Self.descriptor.name, kvHeadProjection: try? SVDHeadsCalibration.cachedFile(calibration).projection(part))
        }
        public func make() throws -> CachePolicy { try SVDHeads(self) }
        /// Stores projected heads from the first token on (prefill attention reads them): no shared prefill.
        public var prefillSharing: PrefillSharing { .none }
    }

    public let config: Config
    public let calibration: SVDHeadsCalibration
    public let projection: KVHeadProjection
    public var part: Part { config.part }

    public init(_ config: Config) throws {
        try config.validate()
        let file = try SVDHeadsCalibration.cachedFile(config.calibration)
        self.config = config
        calibration = file.calibration
        projection = file.projection(config.part)
    }

    public convenience init(calibration path: String, part: Part = .both) throws { try self.init(Config(calibration: path, part: part)) }

    /// A calibration in memory (tests, the calibrate command); `path` is only its label.
    public init(calibration: SVDHeadsCalibration, path: String = "", part: Part = .both) {
        config = Config(calibration: path, part: part)
        self.calibration = calibration
        projection = Self.projection(calibration, part: part)
    }

    /// The calibration's projection (the config's layout reads the same from the file).
    public var layout: StorageLayout { StorageLayout(owner: Config.descriptor.name, kvHeadProjection: projection) }

    /// The projection the cache applies for `part`: the calibration's, with the other cache
    /// mean-pooled in the projection's terms.
    public static func projection(_ cal: SVDHeadsCalibration, part: Part) -> KVHeadProjection {
        let p = cal.projection
        guard part != .both else { return p }
        return KVHeadProjection(
            layers: p.layers, modelKVHeads: p.modelKVHeads, storedKVHeads: p.storedKVHeads, headDim: p.headDim,
            valueBasis: part == .values ? p.valueBasis : meanValueBasis(p),
            keyRe: part == .keys ? p.keyRe : p.keyRe.map { $0.map { $0.map { _ in 1 / Float(p.ratio).squareRoot() } } },
            keyIm: part == .keys ? p.keyIm : p.keyIm.map { $0.map { $0.map { _ in 0 } } })
    }

    /// Mean pooling in the projection's terms: U = [I; ...; I] / sqrt(r) stores sum/sqrt(r) and reads
    /// every head back as the group mean (the same for keys with u = 1/sqrt(r)).
    public static func meanValueBasis(_ p: KVHeadProjection) -> [[[Float]]] {
        let d = p.headDim, r = p.ratio
        var u = [Float](repeating: 0, count: r * d * d)
        for m in 0..<r { for i in 0..<d { u[(m * d + i) * d + i] = 1 / Float(r).squareRoot() } }
        return Array(repeating: Array(repeating: u, count: p.storedKVHeads), count: p.layers)
    }
}

/// An SVD calibration as read once per file, with its projections per part made when first asked.
public final class SVDHeadsFile: @unchecked Sendable {
    public let calibration: SVDHeadsCalibration
    private let lock = NSLock()
    private var projections: [SVDHeads.Part: KVHeadProjection] = [:]
    init(_ calibration: SVDHeadsCalibration) { self.calibration = calibration }
    public func projection(_ part: SVDHeads.Part) -> KVHeadProjection {
        lock.lock(); defer { lock.unlock() }
        if let p = projections[part] { return p }
        let p = SVDHeads.projection(calibration, part: part)
        projections[part] = p
        return p
    }
}

extension SVDHeadsCalibration {
    static let format = "kvlab-svd-kv-heads"

    /// Writes the calibration (atomically): `value_basis` [L, Hs, r*d, d], `key_coef_re` and
    /// `key_coef_im` [L, Hs, d/2, r], the errors [L, Hs] (float32) and provenance attributes.
    public func save(to path: String) throws {
        try H5File.writeAtomically(to: path) { f in
            let L = layers, hs = storedKVHeads, r = ratio, d = headDim, root = f.root
            let v = try root.write("value_basis", floats: Array(valueBasis.joined().joined()), shape: [L, hs, r * d, d])
            try v.setAttribute("doc", "U per layer and stored head, row-major [r*d, d]: stored v' = [v_{s*r} .. v_{s*r+r-1}] U; model head m read back as v' U_m^T (U_m = rows m*d..<(m+1)*d)")
            let kr = try root.write("key_coef_re", floats: Array(keyRe.joined().joined()), shape: [L, hs, d / 2, r])
            try kr.setAttribute("doc", "u_j per layer, stored head and RoPE frequency j (rotate-half pairs j, j+d/2), complex, unit: stored z'_j = u_j^H z_j with z_j = k_j + i k_{j+d/2}; queries of model head m multiplied by conj(u_{j,m})")
            try root.write("key_coef_im", floats: Array(keyIm.joined().joined()), shape: [L, hs, d / 2, r])
            for (name, x) in [("value_error", valueError), ("key_error", keyError),
                              ("value_error_mean_pool", valueErrorMean), ("key_error_mean_pool", keyErrorMean)] {
                let ds = try root.write(name, floats: x, shape: [L, hs])
                try ds.setAttribute("doc", "relative reconstruction error sum ||x - x_hat||^2 / sum ||x||^2 over the calibration tokens, per layer and stored head")
            }
            try root.setAttribute("format", Self.format)
            try root.setAttribute("version", 1)
            try root.setAttribute("layers", L)
            try root.setAttribute("model_kv_heads", modelKVHeads)
            try root.setAttribute("stored_kv_heads", hs)
            try root.setAttribute("head_dim", d)
            try root.setAttribute("tokens", tokens)
            for (k, val) in attributes.sorted(by: { $0.key < $1.key }) { try root.setAttribute(k, val) }
        }
    }

    /// Reads a file written by `save` (errors name the file, the field and what was expected).
    public static func load(_ path: String) throws -> SVDHeadsCalibration {
        func bad(_ m: String) -> PolicyError { .invalidParameter(policy: "svd_heads", field: "calibration", message: "\(path): \(m)") }
        guard FileManager.default.fileExists(atPath: path) else { throw bad("file not found; write one with `kvlab calibrate svd-heads`") }
        let f = try H5File.open(path)
        defer { try? f.close() }
        let root = f.root
        guard root.hasAttribute("format"), try root.stringAttribute("format") == format else {
            throw bad("not an SVD KV-head calibration (attribute format != \(format)); write one with `kvlab calibrate svd-heads`")
        }
        let L = try root.intAttribute("layers"), hkv = try root.intAttribute("model_kv_heads")
        let hs = try root.intAttribute("stored_kv_heads"), d = try root.intAttribute("head_dim")
        guard L >= 1, hs >= 1, hkv % hs == 0, d >= 2, d % 2 == 0 else {
            throw bad("attributes: expected layers >= 1, stored_kv_heads dividing model_kv_heads, even head_dim; got \(L), \(hs)/\(hkv), \(d)")
        }
        let r = hkv / hs
        func read(_ name: String, _ shape: [Int]) throws -> [Float] {
            let (x, s) = try root.readFloats(name)
            guard s == shape else { throw bad("\(name): expected shape \(shape), got \(s)") }
            guard x.allSatisfy(\.isFinite) else { throw bad("\(name): non-finite values") }
            return x
        }
        func split(_ x: [Float], _ inner: Int) -> [[[Float]]] {
            (0..<L).map { l in (0..<hs).map { s in Array(x[((l * hs + s) * inner)..<((l * hs + s + 1) * inner)]) } }
        }
        let vb = split(try read("value_basis", [L, hs, r * d, d]), r * d * d)
        let kr = split(try read("key_coef_re", [L, hs, d / 2, r]), d / 2 * r)
        let ki = split(try read("key_coef_im", [L, hs, d / 2, r]), d / 2 * r)
        var attrs: [String: String] = [:]
        for name in try root.attributeNames() {
            if let s = try? root.stringAttribute(name), name != "format" { attrs[name] = s }
        }
        return SVDHeadsCalibration(layers: L, modelKVHeads: hkv, storedKVHeads: hs, headDim: d, valueBasis: vb, keyRe: kr, keyIm: ki,
                                   valueError: try read("value_error", [L, hs]), keyError: try read("key_error", [L, hs]),
                                   valueErrorMean: try read("value_error_mean_pool", [L, hs]),
                                   keyErrorMean: try read("key_error_mean_pool", [L, hs]),
                                   tokens: root.hasAttribute("tokens") ? try root.intAttribute("tokens") : 0, attributes: attrs)
    }

    private static let files = PolicyFileCache<SVDHeadsFile>()

    /// `load`, remembered per path and modification date (a sweep builds the policy once per sample).
    public static func cachedFile(_ path: String) throws -> SVDHeadsFile {
        try files.load(path, policy: SVDHeads.Config.descriptor.name, field: "calibration") { SVDHeadsFile(try load($0)) }
    }

    /// `load`, remembered per path and modification date.
    public static func loadCached(_ path: String) throws -> SVDHeadsCalibration { try cachedFile(path).calibration }
}
