// Support file, not a policy: per-layer x query-head scores written by `kvlab calibrate heads`
// (retrieval scores: Wu et al., arXiv 2404.15574, reference nightdessert/Retrieval_Head; long-context
// scores: Donhauser et al., arXiv 2502.09647) and read by head ablation and head-aware policies.
import Foundation
import KVHDF5

/// Score maps [layers, query heads] by name, with provenance. Every dataset of the file whose
/// shape is [L, H] is a score map (`retrieval_score`, `lc_bulk_mass`, ...; docs/heads.md lists
/// them); `ranked(by:)` orders heads for "top k" selections.
public struct HeadScoreFile {
    public static let format = "kvlab-head-scores"
    public let path: String
    public let layers: Int, queryHeads: Int
    /// name -> values [L * H] row-major.
    public let maps: [String: [Float]]
    public let attributes: [String: String]

    public init(path: String = "", layers: Int, queryHeads: Int, maps: [String: [Float]], attributes: [String: String] = [:]) {
        precondition(maps.values.allSatisfy { $0.count == layers * queryHeads }, "score maps must be [layers, query heads]")
        self.path = path; self.layers = layers; self.queryHeads = queryHeads; self.maps = maps; self.attributes = attributes
    }

    /// Heads ordered by descending score of map `name` (NaN last; ties by layer, then head).
    public func ranked(by name: String = "retrieval_score") throws -> [(layer: Int, head: Int, score: Float)] {
        guard let m = maps[name] else {
            throw PolicyError.invalidParameter(policy: "heads", field: "score",
                message: "\(path): no score map '\(name)'; maps: \(maps.keys.sorted().joined(separator: ", "))")
        }
        return (0..<(layers * queryHeads)).map { (layer: $0 / queryHeads, head: $0 % queryHeads, score: m[$0]) }
            .sorted { a, b in
                let x = a.score.isNaN ? -Float.infinity : a.score, y = b.score.isNaN ? -Float.infinity : b.score
                return x != y ? x > y : (a.layer, a.head) < (b.layer, b.head)
            }
    }

    /// Writes the maps as [L, H] float32 datasets with the format attributes (atomically): enough for
    /// `load` (`kvlab calibrate heads` writes the full file, with its prompts and provenance).
    public func save(to path: String) throws {
        try H5File.writeAtomically(to: path) { f in
            for (name, m) in maps.sorted(by: { $0.key < $1.key }) { try f.root.write(name, floats: m, shape: [layers, queryHeads]) }
            try f.root.setAttribute("format", Self.format)
            try f.root.setAttribute("layers", layers)
            try f.root.setAttribute("query_heads", queryHeads)
            for (k, v) in attributes.sorted(by: { $0.key < $1.key }) where !["format", "layers", "query_heads"].contains(k) { try f.root.setAttribute(k, v) }
        }
    }

    /// Reads a file written by `kvlab calibrate heads` (errors name the file and what is wrong).
    public static func load(_ path: String) throws -> HeadScoreFile {
        func bad(_ m: String) -> PolicyError { .invalidParameter(policy: "heads", field: "scores", message: "\(path): \(m)") }
        guard FileManager.default.fileExists(atPath: path) else { throw bad("file not found; write one with `kvlab calibrate heads`") }
        guard H5File.isHDF5(path) else { throw bad("not an HDF5 file") }
        let f = try H5File.open(path)
        defer { try? f.close() }
        let root = f.root
        guard root.hasAttribute("format"), try root.stringAttribute("format") == format else {
            throw bad("not a head-score file (attribute format != \(format)); write one with `kvlab calibrate heads`")
        }
        let L = try root.intAttribute("layers"), H = try root.intAttribute("query_heads")
        var maps: [String: [Float]] = [:]
        for name in try root.memberNames() where (try? root.datasetShape(name)) == [L, H] {
            maps[name] = try root.readFloats(name).values
        }
        guard maps["retrieval_score"] != nil else { throw bad("missing dataset retrieval_score [\(L), \(H)]") }
        var attrs: [String: String] = [:]
        for name in try root.attributeNames() { if let s = try? root.stringAttribute(name) { attrs[name] = s } }
        return HeadScoreFile(path: path, layers: L, queryHeads: H, maps: maps, attributes: attrs)
    }
}
