import Foundation
import XCTest
@testable import KVHDF5

final class HDF5Tests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("kvhdf5-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Asserts that `body` throws an `H5Error` and returns it.
    @discardableResult
    func assertH5Error<T>(_ body: @autoclosure () throws -> T, file: StaticString = #filePath,
                                  line: UInt = #line) -> H5Error? {
        do {
            _ = try body()
            XCTFail("expected an H5Error", file: file, line: line)
            return nil
        } catch let error as H5Error {
            return error
        } catch {
            XCTFail("expected an H5Error, got \(error)", file: file, line: line)
            return nil
        }
    }

    // MARK: Numeric round trips

    func testNumericRoundTripsWithMultiDimensionalShapes() throws {
        let p = path("numeric.h5")
        let floats = (0 ..< 24).map { Float($0) * 0.5 - 3.25 }
        let doubles = (0 ..< 30).map { Double($0) / 7 - 1e300 * Double($0 % 2) }
        let int32s: [Int32] = [.min, -1, 0, 1, .max, 42]
        let int64s: [Int64] = [.min, -1, 0, 1, .max, 1 << 40, -(1 << 50), 7]
        let uint8s = (0 ... 255).map { UInt8($0) }
        do {
            let file = try H5File.create(p)
            let root = file.root
            try root.write("f", floats: floats, shape: [2, 3, 4])
            try root.write("d", doubles: doubles, shape: [5, 6])
            try root.write("i32", int32s: int32s, shape: [3, 2])
            try root.write("i64", int64s: int64s, shape: [2, 2, 2])
            try root.write("u8", uint8s: uint8s, shape: [16, 16])
            try root.write("scalar", doubles: [2.5], shape: [])
            try root.write("empty", floats: [], shape: [0, 3])
            try file.close()
        }
        let file = try H5File.open(p)
        let root = file.root
        let f = try root.readFloats("f")
        XCTAssertEqual(f.values, floats)
        XCTAssertEqual(f.shape, [2, 3, 4])
        XCTAssertEqual(try root.readDoubles("d").values, doubles)
        XCTAssertEqual(try root.readDoubles("d").shape, [5, 6])
        XCTAssertEqual(try root.readInt32s("i32").values, int32s)
        XCTAssertEqual(try root.readInt32s("i32").shape, [3, 2])
        XCTAssertEqual(try root.readInt64s("i64").values, int64s)
        XCTAssertEqual(try root.readInt64s("i64").shape, [2, 2, 2])
        XCTAssertEqual(try root.readUInt8s("u8").values, uint8s)
        XCTAssertEqual(try root.datasetShape("u8"), [16, 16])
        XCTAssertEqual(try root.readDoubles("scalar").values, [2.5])
        XCTAssertEqual(try root.readDoubles("scalar").shape, [])
        XCTAssertEqual(try root.readFloats("empty").values, [])
        XCTAssertEqual(try root.readFloats("empty").shape, [0, 3])
        // HDF5 converts numerically: float32 as float64, int32 as int64, integers as floats.
        XCTAssertEqual(try root.readDoubles("f").values, floats.map(Double.init))
        XCTAssertEqual(try root.readInt64s("i32").values, int32s.map(Int64.init))
        XCTAssertEqual(try root.readDoubles("u8").values, uint8s.map(Double.init))
        XCTAssertEqual(try root.dataset("f").shape, [2, 3, 4])
    }

    func testGzipCompressedRoundTrip() throws {
        let p = path("gzip.h5")
        let plain = path("plain.h5")
        let rows = 512, cols = 1000
        let values = (0 ..< rows * cols).map { Float($0 % 97) }
        try H5File.writeAtomically(to: p) { try $0.root.write("x", floats: values, shape: [rows, cols], gzip: 4) }
        try H5File.writeAtomically(to: plain) { try $0.root.write("x", floats: values, shape: [rows, cols]) }
        let read = try H5File.open(p).root.readFloats("x")
        XCTAssertEqual(read.shape, [rows, cols])
        XCTAssertEqual(read.values, values)
        let size = { (p: String) in (try FileManager.default.attributesOfItem(atPath: p)[.size] as? Int) ?? 0 }
        XCTAssertLessThan(try size(p), try size(plain) / 4, "gzip should compress repetitive data")
        XCTAssertGreaterThan(try size(plain), rows * cols * 4)
        // Chunks never exceed the dataset and stay around 1 MiB.
        XCTAssertEqual(chunkShape(for: [rows, cols], elementSize: 4), [256, 1000])
        XCTAssertEqual(chunkShape(for: [3, 0], elementSize: 8), [3, 1])
        XCTAssertEqual(chunkShape(for: [10], elementSize: 4), [10])
    }

    // MARK: Strings

    func testStringsWithUnicodeRoundTrip() throws {
        let p = path("strings.h5")
        let strings = ["", "hello", "héllo wörld", "e\u{301}", "日本語テキスト", "emoji 🧪🚀👩‍🔬", "tab\tnew\nline",
                       String(repeating: "long ", count: 1000)]
        try H5File.writeAtomically(to: p) { file in
            try file.root.write("s", strings: strings)
            try file.root.write("none", strings: [])
            try file.root.setAttribute("name", "Ünïcødé ✓ 模型")
        }
        let root = try H5File.open(p).root
        let read = try root.readStrings("s")
        XCTAssertEqual(read.shape, [strings.count])
        // Compare bytes: Swift's String == treats "é" and "e\u{301}" as equal.
        XCTAssertEqual(read.values.map { Array($0.utf8) }, strings.map { Array($0.utf8) })
        XCTAssertEqual(try root.readStrings("none").values, [])
        XCTAssertEqual(try root.readStrings("none").shape, [0])
        XCTAssertEqual(try root.stringAttribute("name"), "Ünïcødé ✓ 模型")
    }

    func testStringWithNulThrows() throws {
        let file = try H5File.create(path("nul.h5"))
        let error = assertH5Error(try file.root.write("s", strings: ["a\u{0}b"]))
        guard case .invalidArgument(_, "/s", _)? = error else { return XCTFail("got \(String(describing: error))") }
        XCTAssertFalse(file.root.exists("s"))
    }

    // MARK: Attributes

    func testAttributesOnGroupsAndDatasets() throws {
        let p = path("attrs.h5")
        try H5File.writeAtomically(to: p) { file in
            let g = try file.root.createGroup("run")
            try g.setAttribute("model", "llama-tiny")
            try g.setAttribute("temperature", 0.75)
            try g.setAttribute("seed", 1234)
            try g.setAttribute("big", Int.max)
            try g.setAttribute("ratios", [0.5, 0.25, 0.125])
            try g.setAttribute("layers", [0, 3, -7])
            try g.setAttribute("nothing", [Double]())
            try g.setAttribute("seed", 99)  // replaces
            let ds = try g.write("keys", floats: [1, 2, 3, 4], shape: [2, 2])
            try ds.setAttribute("unit", "nats")
            try ds.setAttribute("scale", 2)
            try file.root.setAttribute("version", 3)
            let many = (0 ..< 20_000).map(Double.init)  // beyond the 64 KiB compact-attribute limit
            try file.root.setAttribute("many", many)
        }
        let file = try H5File.open(p)
        let g = try file.root.group("run")
        XCTAssertEqual(try g.attributeNames(), ["big", "layers", "model", "nothing", "ratios", "seed", "temperature"])
        XCTAssertEqual(try g.stringAttribute("model"), "llama-tiny")
        XCTAssertEqual(try g.doubleAttribute("temperature"), 0.75)
        XCTAssertEqual(try g.intAttribute("seed"), 99)
        XCTAssertEqual(try g.intAttribute("big"), Int.max)
        XCTAssertEqual(try g.doubleAttribute("seed"), 99)  // integer → Double converts
        XCTAssertEqual(try g.doublesAttribute("ratios"), [0.5, 0.25, 0.125])
        XCTAssertEqual(try g.intsAttribute("layers"), [0, 3, -7])
        XCTAssertEqual(try g.doublesAttribute("nothing"), [])
        XCTAssertTrue(g.hasAttribute("model"))
        XCTAssertFalse(g.hasAttribute("absent"))
        let ds = try g.dataset("keys")
        XCTAssertEqual(try ds.attributeNames(), ["scale", "unit"])
        XCTAssertEqual(try ds.stringAttribute("unit"), "nats")
        XCTAssertEqual(try ds.intAttribute("scale"), 2)
        XCTAssertEqual(try file.root.intAttribute("version"), 3)
        XCTAssertEqual(try file.root.doublesAttribute("many").count, 20_000)

        guard case .notFound(p, "/run@absent")? = assertH5Error(try g.stringAttribute("absent")) else {
            return XCTFail("missing attribute")
        }
        guard case .typeMismatch(p, "/run@model", _, _)? = assertH5Error(try g.intAttribute("model")) else {
            return XCTFail("string read as int")
        }
        guard case .typeMismatch(p, "/run@temperature", _, _)? = assertH5Error(try g.intAttribute("temperature")) else {
            return XCTFail("double read as int")
        }
        guard case .typeMismatch? = assertH5Error(try g.stringAttribute("seed")) else { return XCTFail("int as string") }
        guard case .typeMismatch(_, "/run@ratios", _, _)? = assertH5Error(try g.doubleAttribute("ratios")) else {
            return XCTFail("array read as scalar")
        }
    }

    // MARK: Groups

    func testNestedGroupsAndMemberNames() throws {
        let p = path("groups.h5")
        do {
            let file = try H5File.create(p)
            let a = try file.root.createGroup("a")
            let b = try a.createGroup("b")
            XCTAssertEqual(b.path, "/a/b")
            try b.write("x", int32s: [1, 2], shape: [2])
            try file.root.createGroup("x/y/z")  // intermediate groups are created
            try file.root.write("deep/data", doubles: [1], shape: [1])
            for name in ["zeta", "Alpha", "mid", "beta"] { try a.createGroup(name) }
            try a.write("ds", uint8s: [1], shape: [1])
            guard case .alreadyExists(p, "/a/b")? = assertH5Error(try a.createGroup("b")) else {
                return XCTFail("existing group")
            }
            try file.close()
        }
        let file = try H5File.open(p)
        let root = file.root
        XCTAssertEqual(try root.memberNames(), ["a", "deep", "x"])
        XCTAssertEqual(try root.group("a").memberNames(), ["Alpha", "b", "beta", "ds", "mid", "zeta"])
        XCTAssertTrue(root.exists("a/b/x"))
        XCTAssertTrue(root.exists("/a/b"))
        XCTAssertTrue(root.exists("x/y/z"))
        XCTAssertFalse(root.exists("a/nope/x"))
        XCTAssertFalse(root.exists("a/b/x/below-a-dataset"))
        XCTAssertFalse(root.exists(""))
        let y = try root.group("x/y")
        XCTAssertEqual(y.path, "/x/y")
        XCTAssertEqual(try y.memberNames(), ["z"])
        XCTAssertEqual(try root.group("a").group("b").readInt32s("x").values, [1, 2])
        XCTAssertEqual(try root.readDoubles("deep/data").values, [1])
        XCTAssertEqual(try root.group("a/b").memberNames(), ["x"])

        guard case .notFound(p, "/a/missing")? = assertH5Error(try root.group("a").group("missing")) else {
            return XCTFail("missing group")
        }
        guard case .typeMismatch(p, "/a/ds", _, _)? = assertH5Error(try root.group("a").group("ds")) else {
            return XCTFail("dataset opened as group")
        }
        guard case .typeMismatch(p, "/a/b", _, _)? = assertH5Error(try root.dataset("a/b")) else {
            return XCTFail("group opened as dataset")
        }
        guard case .invalidArgument? = assertH5Error(try root.group("a//b")) else { return XCTFail("empty component") }
    }

    func testRemoveAndReopenWritable() throws {
        let p = path("rw.h5")
        try H5File.writeAtomically(to: p) { try $0.root.write("a", doubles: [1, 2], shape: [2]) }
        do {
            let file = try H5File.open(p, writable: true)
            try file.root.remove("a")
            try file.root.write("a", doubles: [3, 4, 5], shape: [3])
            try file.root.setAttribute("edited", "yes")
            try file.close()
        }
        let file = try H5File.open(p)
        XCTAssertEqual(try file.root.readDoubles("a").values, [3, 4, 5])
        XCTAssertEqual(try file.root.stringAttribute("edited"), "yes")
        // A read-only file refuses writes with an error, not a crash.
        guard case .readOnly(p, "/b")? = assertH5Error(try file.root.write("b", doubles: [1], shape: [1])) else {
            return XCTFail("write to read-only file")
        }
        guard case .readOnly(p, "/@x")? = assertH5Error(try file.root.setAttribute("x", 1)) else {
            return XCTFail("attribute on read-only file")
        }
        guard case .readOnly? = assertH5Error(try file.root.createGroup("g")) else { return XCTFail("group") }
        guard case .readOnly? = assertH5Error(try file.root.remove("a")) else { return XCTFail("remove") }
    }

    // MARK: Validation

    func testValidationThrowsInsteadOfCrashing() throws {
        let p = path("validate.h5")
        let file = try H5File.create(p)
        let root = file.root
        guard case .shapeMismatch(p, "/x", [2, 3], 5)? = assertH5Error(try root.write("x", floats: [1, 2, 3, 4, 5], shape: [2, 3])) else {
            return XCTFail("shape mismatch")
        }
        guard case .invalidArgument? = assertH5Error(try root.write("x", floats: [], shape: [-1, 0])) else {
            return XCTFail("negative dimension")
        }
        guard case .invalidArgument? = assertH5Error(try root.write("x", floats: [1], shape: [Int.max, 3])) else {
            return XCTFail("overflowing shape")
        }
        guard case .invalidArgument? = assertH5Error(try root.write("x", floats: [1], shape: [1], gzip: 12)) else {
            return XCTFail("gzip level")
        }
        guard case .invalidArgument? = assertH5Error(try root.write("", floats: [1], shape: [1])) else {
            return XCTFail("empty name")
        }
        XCTAssertEqual(try root.memberNames(), [], "failed writes leave nothing behind")
        try root.write("x", floats: [1.5, 2.5], shape: [2])
        try root.write("s", strings: ["a"])
        guard case .alreadyExists(p, "/x")? = assertH5Error(try root.write("x", floats: [1], shape: [1])) else {
            return XCTFail("existing dataset")
        }
        guard case .typeMismatch(p, "/x", _, _)? = assertH5Error(try root.readInt32s("x")) else {
            return XCTFail("float dataset read as int")
        }
        guard case .typeMismatch(p, "/x", _, _)? = assertH5Error(try root.readStrings("x")) else {
            return XCTFail("numbers read as strings")
        }
        guard case .typeMismatch(p, "/s", _, _)? = assertH5Error(try root.readDoubles("s")) else {
            return XCTFail("strings read as numbers")
        }
        guard case .notFound(p, "/nope")? = assertH5Error(try root.readDoubles("nope")) else {
            return XCTFail("missing dataset")
        }
    }

    func testClosedFileThrows() throws {
        let p = path("closed.h5")
        let file = try H5File.create(p)
        let group = try file.root.createGroup("g")
        let dataset = try group.write("d", doubles: [1], shape: [1])
        try file.close()
        try file.close()  // idempotent
        XCTAssertFalse(file.isOpen)
        guard case .fileClosed(p)? = assertH5Error(try group.memberNames()) else { return XCTFail("group") }
        guard case .fileClosed(p)? = assertH5Error(try dataset.readDoubles()) else { return XCTFail("dataset") }
        guard case .fileClosed(p)? = assertH5Error(try file.root.createGroup("h")) else { return XCTFail("root") }
        XCTAssertFalse(file.root.exists("g"))
        // Closing really closed the file: its content is complete and readable.
        XCTAssertEqual(try H5File.open(p).root.group("g").readDoubles("d").values, [1])
    }

    func testObjectsKeepTheirFileAlive() throws {
        let p = path("alive.h5")
        try H5File.writeAtomically(to: p) { try $0.root.createGroup("g").write("d", int64s: [5, 6], shape: [1, 2]) }
        let dataset = try H5File.open(p).root.group("g").dataset("d")  // the file object is not kept by the caller
        XCTAssertEqual(dataset.path, "/g/d")
        XCTAssertEqual(try dataset.readInt64s().values, [5, 6])
        XCTAssertEqual(dataset.shape, [1, 2])
    }

    func testNoIdentifiersLeak() throws {
        let baseline = openHDF5ObjectCount()
        let p = path("leak.h5")
        try H5File.writeAtomically(to: p) { file in
            let g = try file.root.createGroup("g/h")
            try g.write("f", floats: [1, 2, 3, 4], shape: [2, 2], gzip: 1)
            try g.write("s", strings: ["a", "b"])
            try g.setAttribute("a", "x")
            try g.setAttribute("b", [1.0, 2.0])
            _ = try? g.write("f", floats: [1], shape: [1])
            _ = try? g.group("f")
        }
        do {
            let file = try H5File.open(p)
            let g = try file.root.group("g/h")
            _ = try g.readFloats("f")
            _ = try g.readStrings("s")
            _ = try g.stringAttribute("a")
            _ = try g.attributeNames()
            _ = try g.memberNames()
            _ = try? g.readInt32s("f")
            _ = try? g.readStrings("f")
            _ = try? g.intAttribute("a")
            _ = try? g.stringAttribute("missing")
            _ = try? g.write("new", floats: [1], shape: [1])
            XCTAssertGreaterThan(openHDF5ObjectCount(), baseline)
        }
        _ = try? H5File.open(path("absent.h5"))
        XCTAssertEqual(openHDF5ObjectCount(), baseline, "every HDF5 identifier is closed")
    }
}
