import Foundation
import XCTest
@testable import KVExperiments

final class RealTextTests: XCTestCase {
    func testLicensesCorpusIsRealTextWithItsHash() throws {
        let c = try RealText.load("debian:licenses")
        XCTAssertEqual(c.files.count, RealText.licenseFiles.count)
        XCTAssertGreaterThan(c.text.split(whereSeparator: \.isWhitespace).count, 20_000)
        XCTAssertTrue(c.text.hasPrefix("GNU GENERAL PUBLIC LICENSE"), String(c.text.prefix(40)))
        var h = SHA256(); h.update(Array(c.text.utf8))
        XCTAssertEqual(c.sha256, h.finalize())
        XCTAssertEqual(c.sha256.count, 64)
    }

    func testUnknownAndMissingCorporaAreClearErrors() {
        XCTAssertThrowsError(try RealText.load("debian:nope")) { XCTAssertTrue($0.localizedDescription.contains("unknown corpus 'nope'")) }
        setenv("KVLAB_TEXT_DIR", "/nonexistent-kvlab", 1)
        defer { unsetenv("KVLAB_TEXT_DIR") }
        XCTAssertThrowsError(try RealText.load("debian:kjv")) { XCTAssertTrue($0.localizedDescription.contains("fetch_text.sh")) }
    }

    func testTextFileAcceptsCorpusNames() throws {
        let text = try TextFile.read("debian:licenses")
        XCTAssertEqual(text, try RealText.load("debian:licenses").text)
    }
}
