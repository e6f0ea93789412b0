// Issue 16 regressions of the results store and merge: failed runs retried, the writer's lock
// shared with merge and keyed by the real path, interrupted merges cleaned up, shard files that
// cannot lie, a file replaced under a writer. Part of ResultsTests.
import Foundation
import XCTest
import KVHDF5
@testable import KVExperiments

extension ResultsTests {
    /// A failed run is replaced by a later commit of the same key (a rerun retries it); an ok run
    /// never is.
    func testFailedRunIsReplacedByItsRetry() throws {
        let p = path("retry.h5")
        var failed = Self.run(4)   // status "error: ..."
        XCTAssertNotEqual(failed.status, "ok")
        do {
            let store = try openStore(p)
            try store.commit(Self.run(1))
            try store.commit(failed)
            XCTAssertTrue(store.isFailed(index: 4))
            XCTAssertFalse(store.isFailed(index: 1))
            store.close()
        }
        for rewrite in [false, true] {
            let store = try openStore(p)
            if rewrite { store.commitMode = .rewriteEveryCommit }
            XCTAssertEqual(store.failedIndices, rewrite ? [] : [4])
            if !rewrite {
                failed.status = "ok"
                try store.commit(failed)
                XCTAssertFalse(store.isFailed(index: 4))
                // Committing it again, or an ok run, is still a duplicate.
                guard case .duplicateRun? = resultsError(try store.commit(failed)) else { return XCTFail("duplicate") }
                guard case .duplicateRun? = resultsError(try store.commit(Self.run(1))) else { return XCTFail("duplicate ok run") }
            }
            store.close()
            let file = try ResultsFile.read(p)
            XCTAssertEqual(file.runs.map(\.index), [1, 4])
            XCTAssertEqual(file.run(index: 4)?.status, "ok")
        }
        // The same through the compaction path: fail again, retry with every commit a rewrite.
        let p2 = path("retry2.h5")
        var again = Self.run(9)
        do { let s = try openStore(p2); try s.commit(again); s.close() }
        let s = try openStore(p2)
        s.commitMode = .rewriteEveryCommit
        XCTAssertTrue(s.isFailed(index: 9))
        again.status = "ok"
        try s.commit(again)
        s.close()
        XCTAssertEqual(try ResultsFile.read(p2).runs.map(\.status), ["ok"])
    }

    /// `--shard 1/3 --output X` onto a file of shard 0/3 is refused: its `shard` attribute would lie.
    func testAFileHoldsOneShard() throws {
        let p = path("shards.h5")
        do { let s = try openStore(p, shard: "0/3"); try s.commit(Self.run(1)); s.close() }
        guard case .failed(_, let reason)? = resultsError(try openStore(p, shard: "1/3")) else { return XCTFail("shard 1/3") }
        XCTAssertTrue(reason.contains("shard 0/3") && reason.contains("shard 1/3"), reason)
        guard case .failed? = resultsError(try openStore(p)) else { return XCTFail("unsharded onto a shard file") }
        XCTAssertEqual(try ResultsFile.readProvenance(p).shard, "0/3")
        XCTAssertEqual(try ResultsFile.read(p).runs.count, 1, "the file is untouched")
        let forced = try openStore(p, force: true, shard: "1/3")
        XCTAssertNotNil(forced.backupPath)
        forced.close()
        XCTAssertEqual(try ResultsFile.readProvenance(p).shard, "1/3")
    }

    /// `kvlab merge` onto a file a sweep is writing is refused (same lock), also through a symlink.
    func testMergeTakesTheWritersLockKeyedByTheRealPath() throws {
        let shard = path("in.h5")
        do { let s = try openStore(shard); try s.commit(Self.run(1)); s.close() }
        let target = path("sweep.h5")
        let writer = try openStore(target)
        try writer.commit(Self.run(2))
        guard case .locked? = resultsError(try ResultsMerge.merge([shard], into: target, force: true)) else {
            return XCTFail("merge onto a locked file")
        }
        let link = path("link.h5")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: target)
        guard case .locked? = resultsError(try ResultsMerge.merge([shard], into: link, force: true)) else {
            return XCTFail("merge through a symlink")
        }
        guard case .locked? = resultsError(try openStore(link)) else { return XCTFail("second writer through a symlink") }
        XCTAssertEqual(ResultsStore.lockPath(for: link), ResultsStore.lockPath(for: target))
        // A symlinked directory leads to the same lock too.
        let dirLink = path("dirlink")
        try FileManager.default.createSymbolicLink(atPath: dirLink, withDestinationPath: directory.path)
        guard case .locked? = resultsError(try openStore(dirLink + "/sweep.h5")) else { return XCTFail("through a directory link") }
        try writer.commit(Self.run(3))
        writer.close()
        XCTAssertEqual(try ResultsFile.read(target).runs.map(\.index), [2, 3], "the sweep's runs are all there")
        // Once released, a store opened through the link writes the target and keeps the link.
        let viaLink = try openStore(link)
        try viaLink.commit(Self.run(6))
        viaLink.close()
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: link), target)
        XCTAssertEqual(try ResultsFile.read(target).runs.map(\.index), [2, 3, 6])
    }

    /// Temporary files an interrupted merge left (`.<name>.tmp-<pid>-<random>`) are removed by the next
    /// merge (or run) on that output.
    func testInterruptedMergeLeftoversAreCleanedUp() throws {
        let shard = path("s.h5")
        do { let s = try openStore(shard); try s.commit(Self.run(1)); s.close() }
        let out = path("m.h5")
        let leftovers = [".m.h5.tmp-12345-abcdef", ".m.h5.tmp-999-1"]
        for l in leftovers { XCTAssertTrue(FileManager.default.createFile(atPath: path(l), contents: Data([1, 2, 3]))) }
        let unrelated = path(".other.h5.tmp-1-2")
        XCTAssertTrue(FileManager.default.createFile(atPath: unrelated, contents: Data()))
        XCTAssertEqual(try ResultsMerge.merge([shard], into: out, force: false), 1)
        for l in leftovers { XCTAssertFalse(FileManager.default.fileExists(atPath: path(l)), l) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: unrelated), "other files' temporaries are not touched")
    }

    /// A file replaced behind a writer's back (e.g. by a program that ignores the lock) is not
    /// overwritten by its stale view: the next commit fails, and close() leaves the file alone.
    func testFileReplacedUnderAWriterIsNotOverwritten() throws {
        let p = path("replaced.h5")
        let store = try openStore(p)
        try store.commit(Self.run(1))
        let other = path("other.h5")
        do { let s = try openStore(other); for i in 10 ... 12 { try s.commit(Self.run(i)) }; s.close() }
        XCTAssertEqual(rename(other, p), 0)
        guard case .failed(_, let reason)? = resultsError(try store.commit(Self.run(2))) else { return XCTFail("commit") }
        XCTAssertTrue(reason.contains("replaced"), reason)
        store.close()
        XCTAssertEqual(try ResultsFile.read(p).runs.map(\.index), [10, 11, 12])
    }
}
