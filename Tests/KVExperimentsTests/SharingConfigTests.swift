import Foundation
import XCTest
@testable import KVExperiments
import KVCacheCore
import KVPolicies

/// `policy: cla` in configs: defaults, the layers forms, map files, and located errors.
final class SharingConfigTests: XCTestCase {
    static let head = "models:\n  - synthetic: tiny\ntasks:\n  - task: fidelity\n    context: 128\npolicies:\n"

    func policies(_ yaml: String) throws -> [PolicySpec] {
        try ExperimentConfig.parse(Self.head + yaml, file: "cla.yaml").policies
    }

    func testValidCLAEntries() throws {
        XCTAssertEqual(try policies("  - policy: cla\n"), [PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .all, map: nil))])
        XCTAssertEqual(try policies("  - policy: cla\n    share_factor: 3\n    layers: upper_half\n"),
                       [PolicySpec(CrossLayerSharing.Config(shareFactor: 3, layers: .upperHalf, map: nil))])
        XCTAssertEqual(try policies("  - policy: cla\n    layers: 12\n"), [PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .from(12), map: nil))])
        XCTAssertEqual(try policies("  - policy: cla\n    layers: all\n    share_factor: [1, 2]\n").count, 2)
        let stacked = try policies("  - stack:\n      - policy: cla\n      - policy: snapkv\n        budget: 64\n")
        XCTAssertEqual(stacked.first?.kind, "cla+snapkv")
        XCTAssertEqual(stacked.first?.family, "sharing+eviction")
    }

    func testMapFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cla-map-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try KVSharerMap(layers: 2, map: [1: 0], threshold: 0.5, maxShared: 1, similarity: 0.9,
                        ranking: [.init(layer: 1, source: 0, distance: 1, similarity: 0.9, accepted: true)], tokens: 10).save(to: path)
        let p = try policies("  - policy: cla\n    map_file: \(path)\n")
        XCTAssertEqual(p, [PolicySpec(CrossLayerSharing.Config(shareFactor: 2, layers: .all, map: path))])
        XCTAssertEqual(p[0].parameters.map(\.0), ["map_file"])
        let policy = try p[0].make()
        policy.bind(shape: CacheShape(layers: 2, queryHeads: 4, kvHeads: 2, headDim: 16))
        XCTAssertEqual(policy.sourceLayer(1), 0)
    }

    func testInvalidCLAEntriesNameTheField() {
        let rows: [(String, String, [String])] = [
            ("zero factor", "  - policy: cla\n    share_factor: 0\n", ["policies[0].share_factor", ">= 1"]),
            ("factor not an integer", "  - policy: cla\n    share_factor: two\n", ["policies[0].share_factor", "integer"]),
            ("bad layers", "  - policy: cla\n    layers: lower_half\n", ["policies[0].layers", "all, upper_half", "lower_half"]),
            ("negative layers", "  - policy: cla\n    layers: -1\n", ["policies[0].layers", ">= 0"]),
            ("missing map file", "  - policy: cla\n    map_file: /no/such/map.json\n", ["policies[0].map_file", "/no/such/map.json"]),
            ("map file with factor", "  - policy: cla\n    map_file: m.json\n    share_factor: 2\n", ["policies[0]", "map_file", "share_factor"]),
            ("unknown key", "  - policy: cla\n    factor: 2\n", ["policies[0].factor", "unknown key", "share_factor"]),
        ]
        for (name, yaml, fragments) in rows {
            do {
                _ = try policies(yaml)
                XCTFail("\(name): accepted")
            } catch {
                let message = error.localizedDescription
                for f in fragments { XCTAssertTrue(message.contains(f), "\(name): '\(message)' lacks '\(f)'") }
            }
        }
    }
}
