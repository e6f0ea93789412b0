import Foundation
import XCTest
@testable import KVExperiments
@testable import KVPolicies

/// `kvlab calibrate loki|kvsharer`: real text by default (debian:licenses through the model's
/// tokenizer), recorded with its sha256; random ids only when asked; a clear error without a tokenizer.
final class CalibrateCommandTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvlab-cal-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Runs the kvlab binary built next to the tests; returns (exit status, stderr).
    func kvlab(_ args: [String]) throws -> (Int32, String) {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let candidates = [here.appendingPathComponent("kvlab"), here.deletingLastPathComponent().appendingPathComponent("kvlab"),
                          Self.root.appendingPathComponent(".build/debug/kvlab")]
        guard let bin = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0.path) }) else {
            throw XCTSkip("kvlab binary not found next to the tests (run `swift build --build-tests`)")
        }
        let p = Process()
        p.executableURL = bin
        p.arguments = args
        p.currentDirectoryURL = Self.root
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func testLokiCalibratesOnDebianLicensesByDefault() throws {
        let out = dir.appendingPathComponent("loki.h5").path
        let (status, err) = try kvlab(["calibrate", "--model", "models/kvlab-retrieval", "--out", out, "--max-tokens", "300", "--threads", "1"])
        XCTAssertEqual(status, 0, err)
        let cal = try LokiCalibration.load(out)
        XCTAssertEqual(cal.attributes["calibration_source"], "text")
        XCTAssertEqual(cal.attributes["text"], "debian:licenses")
        XCTAssertEqual(cal.attributes["text_sha256"], try RealText.load("debian:licenses").sha256)
        XCTAssertEqual(cal.attributes["tokens_used"], "300")
        XCTAssertTrue(cal.attributes["tokenizer"]?.hasSuffix("models/kvlab-retrieval/tokenizer.json") ?? false, "\(cal.attributes)")
    }

    func testRandomIdsOnlyWhenAskedAndAClearErrorWithoutATokenizer() throws {
        let model = "synthetic:tiny,layers=2,std=0.15,seed=3"
        let out = dir.appendingPathComponent("r.h5").path
        let (status, err) = try kvlab(["calibrate", "--model", model, "--out", out])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(err.contains("no tokenizer") && err.contains("--random-tokens"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let (ok, err2) = try kvlab(["calibrate", "--model", model, "--out", out, "--random-tokens", "64", "--seed", "7"])
        XCTAssertEqual(ok, 0, err2)
        let cal = try LokiCalibration.load(out)
        XCTAssertEqual(cal.attributes["calibration_source"], "random")
        XCTAssertEqual(cal.attributes["random_seed"], "7")
        XCTAssertNil(cal.attributes["text_sha256"])
        let (bad, err3) = try kvlab(["calibrate", "--model", model, "--out", out, "--random-tokens", "64", "--text", "debian:kjv"])
        XCTAssertNotEqual(bad, 0)
        XCTAssertTrue(err3.contains("at most one of"), err3)
    }

    func testKVSharerRecordsItsTextSource() throws {
        let out = dir.appendingPathComponent("map.json").path
        let (status, err) = try kvlab(["calibrate", "kvsharer", "--model", "models/kvlab-retrieval", "--out", out,
                                       "--max-tokens", "128", "--sequence-length", "64", "--max-shared", "1", "--threads", "1"])
        XCTAssertEqual(status, 0, err)
        let map = try KVSharerMap.load(out)
        XCTAssertEqual(map.attributes["text"], "debian:licenses")
        XCTAssertEqual(map.attributes["text_sha256"], try RealText.load("debian:licenses").sha256)
        XCTAssertEqual(map.attributes["distance_sequences"], "2")
    }
}
