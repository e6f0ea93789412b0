import Foundation
import XCTest
@testable import KVHDF5

/// Whole-file behaviour: atomic writes, garbage and truncated files; copies across files.
extension HDF5Tests {
    // MARK: Atomic writes

    func testWriteAtomicallyReplacesOnSuccess() throws {
        let p = path("atomic.h5")
        try H5File.writeAtomically(to: p) { try $0.root.setAttribute("generation", 1) }
        XCTAssertEqual(try H5File.open(p).root.intAttribute("generation"), 1)
        try H5File.writeAtomically(to: p) { file in
            try file.root.setAttribute("generation", 2)
            XCTAssertTrue(file.path.contains(".atomic.h5.tmp-"), "writes go to a temporary file: \(file.path)")
            XCTAssertFalse(file.path == p)
        }
        XCTAssertEqual(try H5File.open(p).root.intAttribute("generation"), 2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["atomic.h5"])
    }

    func testWriteAtomicallyLeavesOldFileIntactWhenBodyThrows() throws {
        struct Boom: Error {}
        let p = path("keep.h5")
        try H5File.writeAtomically(to: p) { try $0.root.write("v", doubles: [1, 2, 3], shape: [3]) }
        let before = try Data(contentsOf: URL(fileURLWithPath: p))
        XCTAssertThrowsError(try H5File.writeAtomically(to: p) { file in
            try file.root.write("v", doubles: [9, 9, 9, 9], shape: [4])
            throw Boom()
        }) { XCTAssertTrue($0 is Boom, "the body's error propagates, got \($0)") }
        // An H5Error inside the body also aborts cleanly.
        XCTAssertThrowsError(try H5File.writeAtomically(to: p) { try $0.root.write("v", doubles: [1], shape: [2]) })
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), before)
        XCTAssertEqual(try H5File.open(p).root.readDoubles("v").values, [1, 2, 3])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["keep.h5"],
                       "the temporary file is removed")
        // Without an old file, a failed write leaves nothing.
        let fresh = path("fresh.h5")
        XCTAssertThrowsError(try H5File.writeAtomically(to: fresh) { _ in throw Boom() })
        XCTAssertFalse(FileManager.default.fileExists(atPath: fresh))
        // A missing directory is reported as an error.
        XCTAssertThrowsError(try H5File.writeAtomically(to: path("no/such/dir.h5")) { _ in })
    }

    // MARK: Damaged files

    func testOpeningGarbageOrMissingFileThrows() throws {
        let garbage = path("garbage.h5")
        try Data((0 ..< 4096).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }).write(to: URL(fileURLWithPath: garbage))
        guard case .notHDF5(garbage)? = assertH5Error(try H5File.open(garbage)) else { return XCTFail("garbage") }
        XCTAssertFalse(H5File.isHDF5(garbage))
        let empty = path("empty.h5")
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        guard case .notHDF5(empty)? = assertH5Error(try H5File.open(empty)) else { return XCTFail("empty") }
        let missing = path("missing.h5")
        let error = assertH5Error(try H5File.open(missing))
        guard case .fileNotFound(missing)? = error else { return XCTFail("missing") }
        XCTAssertTrue(error?.localizedDescription.contains(missing) ?? false)
        guard case .fileNotFound? = assertH5Error(try H5File.open(directory.path)) else { return XCTFail("directory") }
    }

    func testOpeningTruncatedFileThrows() throws {
        let p = path("valid.h5")
        try H5File.writeAtomically(to: p) { file in
            let g = try file.root.createGroup("g")
            try g.write("big", doubles: (0 ..< 10_000).map(Double.init), shape: [100, 100])
            try g.setAttribute("name", "valid")
        }
        XCTAssertTrue(H5File.isHDF5(p))
        let data = try Data(contentsOf: URL(fileURLWithPath: p))
        for length in [data.count - 1, data.count / 2, 2048, 100, 9] {
            let cut = path("cut-\(length).h5")
            try data.prefix(length).write(to: URL(fileURLWithPath: cut))
            let error = assertH5Error(try H5File.open(cut).root.group("g").readDoubles("big"))
            XCTAssertNotNil(error, "truncated to \(length) of \(data.count) bytes")
            XCTAssertTrue(error?.localizedDescription.contains(cut) ?? false, "\(String(describing: error))")
        }
        let description = assertH5Error(try H5File.open(path("cut-\(data.count / 2).h5")))?.localizedDescription ?? ""
        // The integrity stamp catches it before HDF5 reads the file.
        XCTAssertTrue(description.contains("damaged") && description.contains("truncated"), description)
    }
}

final class HDF5CopyTests: XCTestCase {
    func testCopyGroupAcrossFilesPreservesDataAndAttributes() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("kvh5copy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a.h5").path, b = dir.appendingPathComponent("b.h5").path
        let src = try H5File.create(a)
        let g = try src.root.createGroup("runs/000001")
        try g.setAttribute("policy", "snapkv")
        try g.write("x", floats: [1, 2, 3, 4, 5, 6], shape: [2, 3])
        try src.close()
        let reopened = try H5File.open(a)
        let dst = try H5File.create(b)
        try reopened.root.copy("runs/000001", to: dst.root.createGroup("runs"), as: "000007")
        XCTAssertThrowsError(try reopened.root.copy("runs/000001", to: dst.root.group("runs"), as: "000007"))
        XCTAssertThrowsError(try reopened.root.copy("runs/missing", to: dst.root, as: "y"))
        try dst.close()
        let check = try H5File.open(b, writable: true)
        // A group with more than 8 attributes is refused with a clear error instead of crashing HDF5 1.10.
        let many = try check.root.createGroup("many")
        for i in 0..<9 { try many.setAttribute("a\(i)", "value \(i)") }
        XCTAssertThrowsError(try check.root.copy("many", to: check.root, as: "many2")) { e in
            XCTAssertTrue(e.localizedDescription.contains("more than 8 attributes"), e.localizedDescription)
        }
        let copied = try check.root.group("runs/000007")
        XCTAssertEqual(try copied.stringAttribute("policy"), "snapkv")
        let (v, shape) = try copied.readFloats("x")
        XCTAssertEqual(v, [1, 2, 3, 4, 5, 6]); XCTAssertEqual(shape, [2, 3])
    }
}

