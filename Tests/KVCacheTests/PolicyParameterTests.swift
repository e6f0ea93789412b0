import XCTest
import KVPolicies

/// Parameters no policy can honour are rejected when the policy is built, naming the field.
final class PolicyParameterTests: XCTestCase {
    func assertRejected(_ build: @autoclosure () throws -> Any, field: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try build(), file: file, line: line) { error in
            let text = error.localizedDescription
            XCTAssertTrue(text.contains("'\(field)'"), "'\(text)' does not name field \(field)", file: file, line: line)
        }
    }

    func testBadParametersNameTheField() {
        assertRejected(try StreamingLLM(budget: .tokens(0)), field: "budget")
        assertRejected(try StreamingLLM(budget: .tokens(-5)), field: "budget")
        assertRejected(try Knorm(budget: .ratio(1.0)), field: "budget")
        assertRejected(try TOVA(budget: .ratio(-0.1)), field: "budget")
        assertRejected(try StreamingLLM(budget: .tokens(8), sinks: 8), field: "sinks")
        assertRejected(try StreamingLLM(budget: .tokens(8), sinks: -1), field: "sinks")
        assertRejected(try SnapKV(budget: .tokens(32), window: 64), field: "window")
        assertRejected(try SnapKV(budget: .tokens(128), window: 0), field: "window")
        assertRejected(try SnapKV(budget: .tokens(128), kernel: 4), field: "kernel")
        assertRejected(try PyramidKV(budget: .tokens(128), beta: 0.5), field: "beta")
        assertRejected(try H2O(budget: .tokens(64), recentFraction: 1.5), field: "recent_fraction")
        assertRejected(try PolicySpec.stack([]).make(), field: "stack")
    }

    func testRatioBudgetFollowsKVPressRounding() {
        XCTAssertEqual(Budget.ratio(0.9).capacity(for: 200), 19)    // int(200 * 0.1) in binary floating point
        XCTAssertEqual(Budget.ratio(0.5).capacity(for: 201), 100)
        XCTAssertEqual(Budget.ratio(0.99).capacity(for: 10), 1)     // never below one token
        XCTAssertEqual(Budget.tokens(64).capacity(for: 10), 64)
    }
}
