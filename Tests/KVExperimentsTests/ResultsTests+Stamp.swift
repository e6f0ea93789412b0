// When the integrity stamp is required: a results file that is resumed, merged or compared must
// carry one (an unstamped one gets an error naming the file and KVLAB_IGNORE_CHECKSUM); a results
// file only read (report) may come from another program, and a stamp is verified whenever present.
// Part of ResultsTests.
import Foundation
import XCTest
import KVHDF5
@testable import KVExperiments

extension ResultsTests {
    /// A KVLab results file as another program would write it: the same HDF5 content, no user
    /// block (the superblock at offset 0, as h5py writes files).
    func unstampedCopy(of source: String, to target: String) throws {
        let bytes = try Data(contentsOf: URL(fileURLWithPath: source))
        XCTAssertTrue(bytes.starts(with: Array("KVLab HDF5 integrity v1".utf8)), "the source is stamped")
        try bytes.dropFirst(512).write(to: URL(fileURLWithPath: target))
    }

    func assertRefusedAsUnstamped(_ body: @autoclosure () throws -> Any, _ file: String, _ what: String,
                                  line: UInt = #line) {
        XCTAssertThrowsError(try body(), what, line: line) { error in
            let text = error.localizedDescription
            XCTAssertTrue(text.contains(file), "\(what): the error names the file: \(text)", line: line)
            XCTAssertTrue(text.contains("no KVLab integrity stamp"), "\(what): \(text)", line: line)
            XCTAssertTrue(text.contains("KVLAB_IGNORE_CHECKSUM=1"), "\(what): the error names the override: \(text)", line: line)
        }
    }

    func testUnstampedResultsAreReadButNotResumedMergedOrCompared() throws {
        let stamped = path("stamped.h5")
        do { let s = try openStore(stamped); try s.commit(Self.run(1)); try s.commit(Self.run(2)); s.close() }
        let foreign = path("foreign.h5")
        try unstampedCopy(of: stamped, to: foreign)

        // Read-only (report): accepted, the same runs.
        let read = try ResultsFile.read(foreign)
        XCTAssertEqual(read.runs, try ResultsFile.read(stamped).runs)
        XCTAssertFalse(try ResultsReport.table(read).isEmpty)

        // Compared, merged (as input and as the --update output), resumed: refused, the file untouched.
        let before = try Data(contentsOf: URL(fileURLWithPath: foreign))
        assertRefusedAsUnstamped(try ResultsFile.read(foreign, requireStamp: true), foreign, "compare")
        assertRefusedAsUnstamped(try ResultsMerge.merge([stamped, foreign], into: path("m.h5"), force: false), foreign, "merge input")
        assertRefusedAsUnstamped(try MergeCheck.check([foreign]), foreign, "merge completeness check")
        assertRefusedAsUnstamped(try ResultsMerge.merge([stamped], into: foreign, force: false, update: true), foreign, "merge --update output")
        assertRefusedAsUnstamped(try openStore(foreign), foreign, "resume")
        guard case .unstamped(foreign)? = resultsError(try openStore(foreign)) else { return XCTFail("resume: not .unstamped") }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: foreign)), before, "nothing was written")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("m.h5")))

        // Trusted with the override: merged into a stamped copy, which then resumes and compares.
        setenv("KVLAB_IGNORE_CHECKSUM", "1", 1)
        XCTAssertEqual(try ResultsMerge.merge([foreign], into: path("copy.h5"), force: false), 2)
        unsetenv("KVLAB_IGNORE_CHECKSUM")
        XCTAssertEqual(try ResultsFile.read(path("copy.h5"), requireStamp: true).runs, read.runs)
        let resumed = try openStore(path("copy.h5"))
        XCTAssertTrue(resumed.isFinished(index: 2, key: Self.run(2).key))
        resumed.close()
    }

    /// A stamp is verified whenever present, read-only or not: one changed byte is an error for
    /// `report` as for `compare`.
    func testAStampIsVerifiedWheneverPresent() throws {
        let p = path("damaged.h5")
        do { let s = try openStore(p); try s.commit(Self.run(1)); s.close() }
        var bytes = try Data(contentsOf: URL(fileURLWithPath: p))
        bytes[bytes.count - 100] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: p))
        for requireStamp in [false, true] {
            XCTAssertThrowsError(try ResultsFile.read(p, requireStamp: requireStamp)) { error in
                XCTAssertTrue(error.localizedDescription.contains("is damaged"), "\(error.localizedDescription)")
            }
        }
    }

    /// `merge --update` reads the output it may replace under the writer's lock: a sweep writing
    /// that file makes the merge fail (issue 18's update path with issue 16's lock).
    func testMergeUpdateIsRefusedWhileASweepHoldsTheOutput() throws {
        let shard = path("u.shard0of1.h5")
        do { let s = try openStore(shard); try s.commit(Self.run(1)); s.close() }
        let out = path("u.h5")
        XCTAssertEqual(try ResultsMerge.merge([shard], into: out, force: false), 1)
        let writer = try openStore(out)
        guard case .locked? = resultsError(try ResultsMerge.merge([shard], into: out, force: false, update: true)) else {
            return XCTFail("merged onto a file a sweep holds")
        }
        writer.close()
        XCTAssertEqual(try ResultsMerge.merge([shard], into: out, force: false, update: true), 1, "replaced once free: it loses nothing")
    }
}
