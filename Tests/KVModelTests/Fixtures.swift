import Foundation

/// Locates committed fixture files next to this source file (no bundle resources needed).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func hf(_ name: String) -> String { root.appendingPathComponent("hf/\(name)").path }

    /// expected.json written by scripts/fixtures/make_hf_fixtures.py (transformers, float32).
    struct Expected: Decodable {
        let input_ids: [Int]
        let logits: [[Float]]
        let greedy_ids: [Int]
        let min_greedy_margin: Double
    }
    static func expected(_ name: String) throws -> Expected {
        let data = try Data(contentsOf: URL(fileURLWithPath: hf(name)).appendingPathComponent("expected.json"))
        return try JSONDecoder().decode(Expected.self, from: data)
    }

    /// A scratch directory removed at process exit is not needed: callers clean up.
    static func tempDir(_ tag: String) -> URL {
        let u = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-\(tag)-\(UUID().uuidString)")
        try! FileManager.default.createDirectory(at: u, withIntermediateDirectories: true)
        return u
    }
}
