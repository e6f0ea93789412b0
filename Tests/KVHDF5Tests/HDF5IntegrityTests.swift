// The failure paths of whole files: the integrity stamp, Fletcher32 on data, and a full disk
// (a file-size rlimit in a child process, so a crash at exit would show as a signal).
import Foundation
import XCTest
@testable import KVHDF5
#if canImport(Glibc)
import Glibc
#endif

extension HDF5Tests {
    // MARK: XXH64

    /// Digests of the reference implementation (scripts/fixtures/make_xxh64_vectors.py, PyPI xxhash).
    func testXXH64MatchesTheReference() {
        let vectors: [(Int, UInt64)] = [
            (0, 0xef46db3751d8e999), (1, 0xa96c7f0ce858bbb7), (3, 0xbed43740ee6332bb), (4, 0xfa212ae44b3bb23d),
            (7, 0x2744460dd675d2c0), (8, 0x994b676b71ce94dd), (15, 0x09e6451ed2ff8b1d), (31, 0x6711d55e306b5d8f),
            (32, 0x07f7b8e3bc5d6e25), (33, 0x09f85eeb4e1cbe9f), (63, 0xb7c9968c066cb6a5), (64, 0x50d4159a0411632e),
            (100, 0x9ddada11d3dc2d8f), (1000, 0x0bf0bdbcc82eb373), (4097, 0x00811ab3925b884a),
        ]
        for (n, expected) in vectors {
            let bytes = (0 ..< n).map { UInt8(($0 * 131 + 7) % 256) }
            XCTAssertEqual(bytes.withUnsafeBytes { XXH64.hash($0) }, expected, "\(n) bytes")
            // Streaming in uneven pieces gives the same digest.
            var h = XXH64()
            var i = 0, step = 1
            while i < n { let j = min(n, i + step); bytes[i ..< j].withUnsafeBytes { h.update($0) }; i = j; step = step * 2 + 1 }
            XCTAssertEqual(h.finalize(), expected, "\(n) bytes, streamed")
        }
    }

    // MARK: The stamp

    func testWrittenFilesCarryAStampThatMatches() throws {
        let p = path("stamped.h5")
        try H5File.writeAtomically(to: p) { try $0.root.write("v", doubles: [1, 2, 3], shape: [3]) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        XCTAssertTrue(bytes.starts(with: Data(H5Integrity.magic.utf8)), "the user block starts with the stamp")
        XCTAssertEqual(bytes.withUnsafeBytes { H5Integrity.verify($0) }, .intact)
        // Modified in place through KVHDF5: stamped anew.
        try H5File.modifyAtomically(p) { try $0.root.write("w", doubles: [4], shape: [1]) }
        let after = try Data(contentsOf: URL(fileURLWithPath: p))
        XCTAssertEqual(after.withUnsafeBytes { H5Integrity.verify($0) }, .intact)
        let f = try H5File.open(p)
        XCTAssertEqual(try f.root.readDoubles("v").values, [1, 2, 3])
        XCTAssertEqual(try f.root.readDoubles("w").values, [4])
    }

    /// Every single-byte change of a small file is refused with `damaged`, before HDF5 reads it.
    func testEveryFlippedByteIsRefusedBeforeHDF5ReadsTheFile() throws {
        let p = path("small.h5")
        try H5File.writeAtomically(to: p) { file in
            let g = try file.root.createGroup("runs/000001")
            try g.setAttribute("status", "ok")
            try g.write("score", doubles: [1, 0, 1, 1], shape: [4])
            try file.root.write("names", strings: ["a", "b"])
        }
        let original = try Data(contentsOf: URL(fileURLWithPath: p))
        // Every offset against the check itself; a spread of them through H5File.open.
        var missed: [Int] = []
        for offset in 0 ..< original.count {
            var bytes = original
            bytes[offset] ^= 0x5A
            if case .damaged = bytes.withUnsafeBytes({ H5Integrity.verify($0) }) { continue }
            missed.append(offset)
        }
        XCTAssertEqual(missed, [], "flips the stamp check misses")
        let flipped = path("flipped.h5")
        for offset in stride(from: 0, to: original.count, by: max(1, original.count / 97)) {
            var bytes = original
            bytes[offset] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: flipped))
            guard case .damaged(flipped, _)? = assertH5Error(try H5File.open(flipped)) else {
                return XCTFail("offset \(offset): expected `damaged`")
            }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), original, "the original is untouched")
    }

    /// A header overwritten beyond recognition (more than a few bytes of its first line) makes the
    /// file look like another program's: refused where a stamp is required (results resumed,
    /// merged, compared); read as another program's file elsewhere.
    func testOverwrittenHeaderIsRefusedWhereAStampIsRequired() throws {
        let p = path("overwritten.h5")
        try H5File.writeAtomically(to: p) { try $0.root.write("v", doubles: [1], shape: [1]) }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        for i in 0 ..< 64 { bytes[i] = 0x20 }
        try bytes.write(to: URL(fileURLWithPath: p))
        guard case .unstamped(p)? = assertH5Error(try H5File.open(p, requireStamp: true)) else { return XCTFail("read without a check") }
        guard case .unstamped? = assertH5Error(try H5File.modifyAtomically(p, requireStamp: true) { _ in }) else {
            return XCTFail("modified without a check")
        }
        XCTAssertEqual(try H5File.open(p).root.readDoubles("v").values, [1])
    }

    func testAppendedBytesAreRefused() throws {
        let p = path("grown.h5")
        try H5File.writeAtomically(to: p) { try $0.root.setAttribute("a", 1) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: p))
        handle.seekToEndOfFile(); handle.write(Data([0, 1, 2])); handle.closeFile()
        let error = assertH5Error(try H5File.open(p))
        XCTAssertTrue(error?.localizedDescription.contains("bytes appended") ?? false, "\(String(describing: error))")
    }

    // MARK: Fletcher32

    /// With the stamp check turned off (a file edited by another program), a changed byte in a
    /// dataset's data is still an error, not a different number.
    func testFletcher32CatchesChangedDataWhenTheStampIsIgnored() throws {
        let p = path("data.h5")
        let values = (0 ..< 64).map { 0.5 + Double($0) }
        try H5File.writeAtomically(to: p) { try $0.root.write("scores", doubles: values, shape: [64]) }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        let needle = withUnsafeBytes(of: values[10]) { Data($0) }
        guard let at = bytes.range(of: needle)?.lowerBound else { return XCTFail("data not found in the file") }
        bytes[at + 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: p))
        setenv(H5Integrity.ignoreEnvironment, "1", 1)
        defer { unsetenv(H5Integrity.ignoreEnvironment) }
        let error = assertH5Error(try H5File.open(p).root.readDoubles("scores"))
        XCTAssertTrue(error?.localizedDescription.contains("Fletcher32") ?? false, "\(String(describing: error))")
        unsetenv(H5Integrity.ignoreEnvironment)
        guard case .damaged? = assertH5Error(try H5File.open(p)) else { return XCTFail("expected damaged") }
    }

    /// Files from other programs (no stamp, no user block: h5py's, scripts/fixtures/make_legacy_h5.py)
    /// are read: calibration files, head scores and fixtures made with h5py must stay readable.
    /// Where a stamp is required (KVLab's results resumed, merged or compared) they are refused
    /// unless the user trusts them (KVLAB_IGNORE_CHECKSUM=1): a stamp whose first line was
    /// overwritten looks the same. Modified, they are written back without a stamp.
    func testUnstampedFilesAreReadAndKeepTheirLayout() throws {
        let legacy = Data(base64Encoded: [
            "iUhERg0KGgoAAAAAAAgIAAQAEAAAAAAAAAAAAAAAAAD//////////+gVAAAAAAAA//////////8AAAAAAAAAAGAAAAAAAAAAAQAAAAAAAACIAA",
            "AAAAAAAKgCAAAAAAAAAQADAAEAAAAYAAAAAAAAABAAEAAAAAAAiAUAAAAAAABgAAAAAAAAAFRSRUUAAAEA/////////////////////wAAAAAA",
            "AAAAMAQAAAAAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAABIRUFQAAAAAFgAAAAAAAAAEAAAAAAAAADIAgAAAAAAAAAAAAAAAAAAdgAAAAAAAAABAAAAAAAAAEgAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABAAUAAQAAAAABAAAAAAAAAQAYAAAAAAAB",
            "AQEAAAAAAAIAAAAAAAAAAgAAAAAAAAADABgAAQAAABEgPwAIAAAAAABAADQLADT/AwAAAAAAAAUACAABAAAAAgICAQAAAAAIABgAAAAAAAMBeA",
            "UAAAAAAAAQAAAAAAAAAAAAAAAAAAAAiAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAF",
            "NOT0QBAAEACAAAAAAAAAAgAwAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAD4PwAAAAAAAARAEQAQAAAAAACIAAAAAAAAAKgCAAAAAAAADABAAAAAAAABAAcAFAAIAG9yaWdpbgAAGQEBABAAAAAQAAAAAQAAAAAACAAA",
            "AAAAAQAAAAAAAAAEAAAA6AUAAAAAAAABAAAAR0NPTAEAAAAAEAAAAAAAAAEAAAAAAAAABAAAAAAAAABoNXB5AAAAAAAAAAAAAAAA2A8AAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
        ].joined())!
        let p = path("legacy.h5")
        try legacy.write(to: URL(fileURLWithPath: p))
        XCTAssertEqual(legacy.withUnsafeBytes { H5Integrity.verify($0) }, .unstamped)
        XCTAssertEqual(try H5File.open(p).root.readDoubles("v").values, [1.5, 2.5], "a read-only input needs no stamp")
        guard case .unstamped(p)? = assertH5Error(try H5File.open(p, requireStamp: true)) else {
            return XCTFail("an unstamped file was read where a stamp is required")
        }
        XCTAssertTrue(H5Error.unstamped(file: p).localizedDescription.contains(p))
        XCTAssertTrue(H5Error.unstamped(file: p).localizedDescription.contains(H5Integrity.ignoreEnvironment))
        setenv(H5Integrity.ignoreEnvironment, "1", 1)
        defer { unsetenv(H5Integrity.ignoreEnvironment) }
        XCTAssertEqual(try H5File.open(p, requireStamp: true).root.readDoubles("v").values, [1.5, 2.5], "trusted")
        XCTAssertEqual(try H5File.open(p).root.stringAttribute("origin"), "h5py")
        try H5File.modifyAtomically(p) { try $0.root.setAttribute("touched", 1) }
        let after = try Data(contentsOf: URL(fileURLWithPath: p))
        XCTAssertEqual(after.withUnsafeBytes { H5File.signatureOffset($0) }, 0, "no user block added")
        XCTAssertEqual(try H5File.open(p).root.intAttribute("touched"), 1)
        XCTAssertEqual(try H5File.open(p).root.readDoubles("v").values, [1.5, 2.5])
    }

    // MARK: A full disk

    static let diskFullChildEnv = "KVHDF5_DISK_FULL_CHILD"

    /// The child role of `testFullDiskIsAnErrorNotACrash`: under a 64 KiB file-size limit (SIGXFSZ
    /// ignored, so writes fail with EFBIG as on a full disk), writing a larger file must throw,
    /// leave the old file and no temporary file, and the process must then exit normally.
    func testDiskFullChild() throws {
        guard let dir = ProcessInfo.processInfo.environment[Self.diskFullChildEnv] else { return }
        let target = dir + "/full.h5"
        let before = try Data(contentsOf: URL(fileURLWithPath: target))
        signal(SIGXFSZ, SIG_IGN)
        var limit = rlimit(rlim_cur: 64 << 10, rlim_max: 64 << 10)
        XCTAssertEqual(setrlimit(Int32(RLIMIT_FSIZE.rawValue), &limit), 0)
        let big = (0 ..< 40_000).map(Double.init)   // 320 KB
        XCTAssertThrowsError(try H5File.writeAtomically(to: target) { try $0.root.write("big", doubles: big, shape: [big.count]) }) {
            XCTAssertTrue("\($0)".contains("File too large") || "\($0)".contains("No space"), "\($0)")
        }
        XCTAssertThrowsError(try H5File.modifyAtomically(target) { try $0.root.write("big", doubles: big, shape: [big.count]) })
        let file = try H5File.create(dir + "/other.h5")
        try file.root.write("big", doubles: big, shape: [big.count])
        XCTAssertThrowsError(try file.close())
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: target)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["full.h5"])
        XCTAssertEqual(try H5File.open(target).root.readDoubles("small").values, [1, 2])
    }

    func testFullDiskIsAnErrorNotACrash() throws {
        #if !os(Linux)
        throw XCTSkip("runs the test binary itself through /proc/self/exe")
        #endif
        try H5File.writeAtomically(to: path("full.h5")) { try $0.root.write("small", doubles: [1, 2], shape: [2]) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["KVHDF5Tests.HDF5Tests/testDiskFullChild"]
        var env = ProcessInfo.processInfo.environment
        env[Self.diskFullChildEnv] = directory.path
        process.environment = env
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let log = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit, "the child crashed:\n\(log.suffix(2000))")
        XCTAssertEqual(process.terminationStatus, 0, "the child's checks failed:\n\(log.suffix(2000))")
        XCTAssertTrue(log.contains("testDiskFullChild") && log.contains("passed"), log.suffix(2000).description)
    }
}
