import Foundation
import XCTest
import KVPolicies
import KVTestSupport

/// What the descriptors declare is what configs, labels and the docs say.
final class DescriptorTests: XCTestCase {
    /// A parameter value as a config writes it (what `PolicySpec.parameters` prints).
    struct Text: ParameterValue {
        let key: String, text: String
        struct Failure: Error, CustomStringConvertible { let description: String }
        func intValue() throws -> Int { guard let v = Int(text) else { throw fail("expected an integer") }; return v }
        func doubleValue() throws -> Double { guard let v = Double(text) else { throw fail("expected a number") }; return v }
        func boolValue() throws -> Bool { guard let v = Bool(text) else { throw fail("expected true or false") }; return v }
        func stringValue() throws -> String { text }
        func fail(_ message: String) -> Error { Failure(description: "\(key)=\(text): \(message)") }
    }

    func parse(_ d: AnyPolicyDescriptor, _ parameters: [(String, String)]) throws -> PolicySpec {
        let values = Dictionary(uniqueKeysWithValues: parameters.map { ($0.0, Text(key: $0.0, text: $0.1) as ParameterValue) })
        return try d.spec(ParameterInputs(values, entryError: { Text.Failure(description: $0) }))
    }

    /// Reading back what a config writes gives the same config: each parameter is declared once
    /// (keys, type, how it reads and writes), for every example and every setup of every policy.
    func testWrittenParametersReadBackToTheSameConfig() throws {
        for d in PolicyRegistry.all {
            let specs = d.exampleSpecs(tokens: nil, calibration: "cal.h5") + d.exampleSpecs(tokens: 40, calibration: "cal.h5")
            for spec in specs {
                XCTAssertEqual(try parse(d, spec.parameters), spec, spec.label)
                XCTAssertEqual(try parse(d, spec.canonicalParameters).canonicalLabel, spec.canonicalLabel)
                XCTAssertTrue(spec.parameters.allSatisfy { d.keys.contains($0.0) }, "\(spec.label) writes a key its entries cannot take")
            }
        }
    }

    /// Keys are the policy's own; a setup names only keys the policy has; every parameter has help.
    func testKeysSetupsAndHelp() {
        XCTAssertEqual(Set(PolicyRegistry.names).count, PolicyRegistry.names.count, "two policies share a name")
        for d in PolicyRegistry.all {
            XCTAssertEqual(Set(d.keys).count, d.keys.count, "\(d.name): a key declared twice")
            for s in d.setups { for (key, _) in s.values { XCTAssertTrue(d.keys.contains(key), "\(d.name) setup \(s.name): \(key)") } }
            for p in d.parameterRows { XCTAssertFalse(p.help.isEmpty, "\(d.name).\(p.keys): no help") }
            XCTAssertFalse(d.summary.isEmpty, d.name)
        }
    }

    /// docs/config.md holds the table the descriptors generate.
    func testConfigDocHoldsTheGeneratedPolicyTable() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: root.appendingPathComponent("docs/config.md"), encoding: .utf8)
        let table = PolicyRegistry.markdownTable
        XCTAssertTrue(doc.contains(table), "docs/config.md: replace the policy table with PolicyRegistry.markdownTable:\n\(table)")
    }
}
