// KVHDF5: a small, safe Swift wrapper over the HDF5 C library (1.10+).
//
// This is the only file of KVLab that imports CHDF5: every HDF5 call lives here. Conventions:
// - every negative HDF5 return code becomes a thrown `H5Error.libraryCall` naming the C function,
//   the file, the object path, and the message of HDF5's error stack (whose automatic printing
//   is silenced);
// - every HDF5 identifier is owned by exactly one Swift object, or closed by a `defer` in the
//   function that obtained it;
// - closing an `H5File` closes the groups and datasets still open in it; using them afterwards
//   throws `H5Error.fileClosed`.
// Thread safety: HDF5 serializes its own calls (thread-safe build), but an `H5File` and its
// objects are not synchronized: use each file from one thread or task at a time.
import Foundation
internal import CHDF5

// MARK: - Library set-up and error conversion

/// Initializes the library once. Also silences automatic error printing for the calling thread
/// (HDF5's error stacks are per thread in thread-safe builds), so call it on every entry point.
@inline(__always) private func prepareLibrary() {
    _ = libraryInitialized
    kv_silence_errors()
}

private let libraryInitialized: Void = { _ = H5open() }()

private final class ErrorMessages { var items: [String] = [] }

/// The messages on the calling thread's HDF5 error stack, outermost first.
private func errorStackDetail() -> String {
    let box = ErrorMessages()
    let context = Unmanaged.passUnretained(box).toOpaque()
    _ = H5Ewalk2(hid_t(H5E_DEFAULT), H5E_WALK_DOWNWARD, { _, entry, data in
        guard let entry, let data, let desc = entry.pointee.desc else { return 0 }
        let box = Unmanaged<ErrorMessages>.fromOpaque(data).takeUnretainedValue()
        let text = String(cString: desc).replacingOccurrences(of: "\n", with: " ")
        if !text.isEmpty && box.items.last != text { box.items.append(text) }
        return 0
    }, context)
    // The outermost message says what failed, the innermost ones why.
    let items = withExtendedLifetime(box) { box.items }
    let shown = items.count <= 3 ? items : [items[0], "…"] + items.suffix(2)
    return shown.joined(separator: " → ")
}

private func libraryError(_ function: String, _ file: String, _ object: String) -> H5Error {
    .libraryCall(function: function, file: file, object: object, detail: errorStackDetail())
}

/// Throws when `status` (herr_t, htri_t, ssize_t or hid_t) is negative; returns it otherwise.
@discardableResult
private func check<T: BinaryInteger>(_ status: T, _ function: String, _ file: String, _ object: String) throws -> T {
    if status < 0 { throw libraryError(function, file, object) }
    return status
}

/// The number of HDF5 file, group, dataset, named-type and attribute identifiers open in this
/// process, in all files: a leak check for tests.
func openHDF5ObjectCount() -> Int {
    prepareLibrary()
    let all = UInt32(H5F_OBJ_FILE | H5F_OBJ_DATASET | H5F_OBJ_GROUP | H5F_OBJ_DATATYPE | H5F_OBJ_ATTR)  // H5F_OBJ_ALL
    return Int(H5Fget_obj_count(hid_t(all), all))
}

// MARK: - Element types

/// Numeric element types stored as HDF5 native types.
protocol H5NumericElement {
    static var h5Type: hid_t { get }
    static var isInteger: Bool { get }
    static var typeName: String { get }
}
extension Float: H5NumericElement {
    static var h5Type: hid_t { kv_H5T_NATIVE_FLOAT() }
    static var isInteger: Bool { false }
    static var typeName: String { "float32" }
}
extension Double: H5NumericElement {
    static var h5Type: hid_t { kv_H5T_NATIVE_DOUBLE() }
    static var isInteger: Bool { false }
    static var typeName: String { "float64" }
}
extension Int32: H5NumericElement {
    static var h5Type: hid_t { kv_H5T_NATIVE_INT32() }
    static var isInteger: Bool { true }
    static var typeName: String { "int32" }
}
extension Int64: H5NumericElement {
    static var h5Type: hid_t { kv_H5T_NATIVE_INT64() }
    static var isInteger: Bool { true }
    static var typeName: String { "int64" }
}
extension UInt8: H5NumericElement {
    static var h5Type: hid_t { kv_H5T_NATIVE_UINT8() }
    static var isInteger: Bool { true }
    static var typeName: String { "uint8" }
}

private func className(_ cls: H5T_class_t) -> String {
    switch cls {
    case H5T_INTEGER: return "an integer"
    case H5T_FLOAT: return "a floating-point"
    case H5T_STRING: return "a string"
    case H5T_COMPOUND: return "a compound"
    case H5T_ENUM: return "an enum"
    case H5T_ARRAY: return "an array-typed"
    case H5T_VLEN: return "a variable-length"
    default: return "an unsupported-type"
    }
}

/// A new variable-length UTF-8 string type (the caller closes it).
private func makeVariableStringType(_ file: String, _ object: String) throws -> hid_t {
    let type = try check(H5Tcopy(kv_H5T_C_S1()), "H5Tcopy", file, object)
    do {
        try check(H5Tset_size(type, kv_H5T_VARIABLE()), "H5Tset_size", file, object)
        try check(H5Tset_cset(type, H5T_CSET_UTF8), "H5Tset_cset", file, object)
        try check(H5Tset_strpad(type, H5T_STR_NULLTERM), "H5Tset_strpad", file, object)
    } catch { H5Tclose(type); throw error }
    return type
}

/// A dataspace for `shape` (scalar for `[]`); the caller closes it.
private func makeDataspace(_ shape: [Int], _ file: String, _ object: String) throws -> hid_t {
    if shape.isEmpty { return try check(H5Screate(H5S_SCALAR), "H5Screate", file, object) }
    let dims = shape.map { hsize_t($0) }
    return try check(H5Screate_simple(Int32(dims.count), dims, nil), "H5Screate_simple", file, object)
}

/// The shape and element count of a dataspace.
private func dataspaceShape(_ space: hid_t, _ file: String, _ object: String) throws -> (shape: [Int], count: Int) {
    let rank = Int(try check(H5Sget_simple_extent_ndims(space), "H5Sget_simple_extent_ndims", file, object))
    var dims = [hsize_t](repeating: 0, count: rank)
    if rank > 0 { try check(H5Sget_simple_extent_dims(space, &dims, nil), "H5Sget_simple_extent_dims", file, object) }
    let count = Int(try check(H5Sget_simple_extent_npoints(space), "H5Sget_simple_extent_npoints", file, object))
    return (dims.map { Int($0) }, count)
}

/// Encodes strings as a NUL-separated UTF-8 block and calls `body` with one C pointer per string.
private func withCStringArray<R>(_ strings: [String], _ file: String, _ object: String,
                                 _ body: ([UnsafePointer<CChar>?]) throws -> R) throws -> R {
    var block: [CChar] = []
    var offsets: [Int] = []
    for s in strings {
        if s.utf8.contains(0) {
            throw H5Error.invalidArgument(file: file, object: object, reason: "string contains a NUL character")
        }
        offsets.append(block.count)
        block.append(contentsOf: s.utf8.map { CChar(bitPattern: $0) })
        block.append(0)
    }
    return try block.withUnsafeBufferPointer { buffer in
        try body(offsets.map { UnsafePointer(buffer.baseAddress! + $0) })
    }
}

/// Reads `count` strings (variable-length or fixed-length) of file type `fileType` through `read`
/// (H5Dread or H5Aread with the given memory type); `space` describes the selection.
private func readStringValues(fileType: hid_t, space: hid_t, count: Int, _ file: String, _ object: String, noun: String,
                              read: (_ memType: hid_t, _ buffer: UnsafeMutableRawPointer) -> herr_t,
                              readName: String) throws -> [String] {
    let cls = H5Tget_class(fileType)
    guard cls == H5T_STRING else {
        throw H5Error.typeMismatch(file: file, object: object, expected: "a string \(noun)",
                                   found: "\(className(cls)) \(noun)")
    }
    if count == 0 { return [] }
    let cset = H5Tget_cset(fileType)
    let memType = try check(H5Tcopy(kv_H5T_C_S1()), "H5Tcopy", file, object)
    defer { H5Tclose(memType) }
    try check(H5Tset_cset(memType, cset), "H5Tset_cset", file, object)
    if try check(H5Tis_variable_str(fileType), "H5Tis_variable_str", file, object) > 0 {
        try check(H5Tset_size(memType, kv_H5T_VARIABLE()), "H5Tset_size", file, object)
        var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
        return try pointers.withUnsafeMutableBufferPointer { buffer in
            let raw = UnsafeMutableRawPointer(buffer.baseAddress!)
            try check(read(memType, raw), readName, file, object)
            defer { H5Dvlen_reclaim(memType, space, kv_H5P_DEFAULT(), raw) }
            return buffer.map { $0.map { String(cString: $0) } ?? "" }
        }
    }
    let size = H5Tget_size(fileType)
    guard size > 0 else { throw libraryError("H5Tget_size", file, object) }
    let pad = H5Tget_strpad(fileType)
    try check(H5Tset_size(memType, size), "H5Tset_size", file, object)
    try check(H5Tset_strpad(memType, pad), "H5Tset_strpad", file, object)
    var bytes = [UInt8](repeating: 0, count: count * size)
    _ = try bytes.withUnsafeMutableBytes { try check(read(memType, $0.baseAddress!), readName, file, object) }
    return (0 ..< count).map { i in
        var element = bytes[i * size ..< (i + 1) * size]
        if let nul = element.firstIndex(of: 0) { element = element[..<nul] }
        if pad == H5T_STR_SPACEPAD { while element.last == 0x20 { element = element.dropLast() } }
        return String(decoding: element, as: UTF8.self)
    }
}

// MARK: - File

/// An open HDF5 file. Create one with `create`, `open` or `writeAtomically`; closed by `close()`
/// or when released. Files are written in the HDF5 1.8 object format (readable by h5py and any
/// HDF5 ≥ 1.8).
public final class H5File {
    /// The path the file was opened or created with.
    public let path: String
    /// Whether the file was opened for writing.
    public let isWritable: Bool
    var fileID: hid_t
    private final class WeakObject { weak var object: H5Object?; init(_ o: H5Object) { object = o } }
    private var openObjects: [ObjectIdentifier: WeakObject] = [:]

    private init(path: String, fileID: hid_t, writable: Bool) {
        self.path = path
        self.fileID = fileID
        self.isWritable = writable
    }

    deinit { try? close() }

    /// Whether the file is still open.
    public var isOpen: Bool { fileID >= 0 }

    /// The root group "/".
    public var root: H5Group { H5Group(file: self, id: fileID, path: "/", ownsID: false) }

    private static func fileAccessList(_ path: String) throws -> hid_t {
        let fapl = try check(H5Pcreate(kv_H5P_FILE_ACCESS()), "H5Pcreate", path, "/")
        do {
            // The 1.8 format: compatible, and it stores large attributes densely.
            try check(H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18), "H5Pset_libver_bounds", path, "/")
        } catch { H5Pclose(fapl); throw error }
        return fapl
    }

    /// Creates (or truncates) the file at `path`.
    public static func create(_ path: String) throws -> H5File {
        try create(path, flags: kv_H5F_ACC_TRUNC())
    }

    private static func create(_ path: String, flags: UInt32) throws -> H5File {
        prepareLibrary()
        let fapl = try fileAccessList(path)
        defer { H5Pclose(fapl) }
        let id = try check(H5Fcreate(path, flags, kv_H5P_DEFAULT(), fapl), "H5Fcreate", path, "/")
        return H5File(path: path, fileID: id, writable: true)
    }

    /// Opens an existing file, read-only unless `writable`. Throws `fileNotFound`, `notHDF5`, or
    /// `libraryCall("H5Fopen", …)` for a damaged (e.g. truncated) file.
    public static func open(_ path: String, writable: Bool = false) throws -> H5File {
        prepareLibrary()
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw H5Error.fileNotFound(file: path)
        }
        guard try check(H5Fis_hdf5(path), "H5Fis_hdf5", path, "/") > 0 else { throw H5Error.notHDF5(file: path) }
        let fapl = try fileAccessList(path)
        defer { H5Pclose(fapl) }
        let flags = writable ? kv_H5F_ACC_RDWR() : kv_H5F_ACC_RDONLY()
        let id = try check(H5Fopen(path, flags, fapl), "H5Fopen", path, "/")
        return H5File(path: path, fileID: id, writable: writable)
    }

    /// Whether `path` is a readable file with an HDF5 signature.
    public static func isHDF5(_ path: String) -> Bool {
        prepareLibrary()
        return FileManager.default.isReadableFile(atPath: path) && H5Fis_hdf5(path) > 0
    }

    /// Writes a file crash-safely: `body` fills a new file created next to `path` (named
    /// `.<name>.tmp-<pid>-<random>`), which is then closed, fsync'ed and renamed onto `path`.
    /// If `body` (or any step) throws, the temporary file is removed and an existing file at
    /// `path` is left untouched. The file handed to `body` is closed on return: don't keep it.
    public static func writeAtomically(to path: String, _ body: (H5File) throws -> Void) throws {
        let temporary = atomicTemporaryPath(for: path)
        let file = try create(temporary, flags: kv_H5F_ACC_EXCL())
        do {
            try body(file)
            try file.close()
            try fsyncPath(temporary, target: path)
            try renamePath(temporary, to: path)
        } catch {
            try? file.close()
            removeFileQuietly(temporary)
            throw error
        }
        try? fsyncPath(parentDirectory(of: path), target: path, directory: true)
    }

    /// Flushes buffered data to the file.
    public func flush() throws {
        prepareLibrary()
        guard isOpen else { throw H5Error.fileClosed(file: path) }
        try check(H5Fflush(fileID, H5F_SCOPE_LOCAL), "H5Fflush", path, "/")
    }

    /// Closes the file and every group and dataset still open in it. Idempotent.
    public func close() throws {
        guard isOpen else { return }
        prepareLibrary()
        for entry in openObjects.values { entry.object?.invalidate() }
        openObjects.removeAll()
        let status = H5Fclose(fileID)
        fileID = -1
        try check(status, "H5Fclose", path, "/")
    }

    fileprivate func register(_ object: H5Object) { openObjects[ObjectIdentifier(object)] = WeakObject(object) }
    fileprivate func unregister(_ object: H5Object) { openObjects[ObjectIdentifier(object)] = nil }
}

// MARK: - Objects and attributes

/// A group or dataset of an open file; carries attributes. See `H5Group` and `H5Dataset`.
public class H5Object {
    /// The file the object belongs to (kept open while the object lives).
    public let file: H5File
    /// The absolute path of the object inside the file, e.g. "/runs/r1".
    public let path: String
    fileprivate var id: hid_t
    private let ownsID: Bool

    fileprivate init(file: H5File, id: hid_t, path: String, ownsID: Bool) {
        self.file = file
        self.id = id
        self.path = path
        self.ownsID = ownsID
        if ownsID { file.register(self) }
    }

    deinit {
        if ownsID {
            invalidate()
            file.unregister(self)
        }
    }

    /// Closes the HDF5 identifier (called when the object is released or its file closed).
    fileprivate func invalidate() {
        prepareLibrary()
        if ownsID && id >= 0 { H5Oclose(id) }
        id = -1
    }

    /// The identifier, or `fileClosed`. Also prepares the library for the calling thread.
    fileprivate func liveID() throws -> hid_t {
        prepareLibrary()
        guard file.isOpen, id >= 0 else { throw H5Error.fileClosed(file: file.path) }
        return id
    }

    /// The identifier for a modification of `object`: `fileClosed` or `readOnly` otherwise.
    fileprivate func writableID(_ object: String) throws -> hid_t {
        let id = try liveID()
        guard file.isWritable else { throw H5Error.readOnly(file: file.path, object: object) }
        return id
    }

    fileprivate func fail(_ function: String, _ object: String? = nil) -> H5Error {
        libraryError(function, file.path, object ?? path)
    }

    // MARK: Attributes

    /// Whether the attribute `name` exists.
    public func hasAttribute(_ name: String) -> Bool {
        guard let id = try? liveID(), !name.isEmpty else { return false }
        return H5Aexists(id, name) > 0
    }

    /// The names of the object's attributes, sorted.
    public func attributeNames() throws -> [String] {
        let id = try liveID()
        final class Names { var items: [String] = [] }
        let names = Names()
        var index: hsize_t = 0
        let status = H5Aiterate2(id, H5_INDEX_NAME, H5_ITER_INC, &index, { _, name, _, data in
            guard let name, let data else { return 0 }
            Unmanaged<Names>.fromOpaque(data).takeUnretainedValue().items.append(String(cString: name))
            return 0
        }, Unmanaged.passUnretained(names).toOpaque())
        _ = try withExtendedLifetime(names) { try check(status, "H5Aiterate2", file.path, path) }
        return names.items.sorted()
    }

    /// Creates (replacing any existing) attribute `name` of file type `type` and shape `shape`,
    /// writing `buffer` of memory type `type`.
    private func writeAttribute(_ name: String, type: hid_t, shape: [Int]?, buffer: UnsafeRawPointer?) throws {
        let object = attributeObjectPath(path, name)
        let id = try writableID(object)
        if name.isEmpty || name.utf8.contains(0) {
            throw H5Error.invalidArgument(file: file.path, object: object, reason: "invalid attribute name")
        }
        if try check(H5Aexists(id, name), "H5Aexists", file.path, object) > 0 {
            try check(H5Adelete(id, name), "H5Adelete", file.path, object)
        }
        // An empty array becomes a null dataspace (h5py reads it as h5py.Empty).
        let space = try shape.map { try makeDataspace($0, file.path, object) }
            ?? check(H5Screate(H5S_NULL), "H5Screate", file.path, object)
        defer { H5Sclose(space) }
        let attr = try check(H5Acreate2(id, name, type, space, kv_H5P_DEFAULT(), kv_H5P_DEFAULT()),
                             "H5Acreate2", file.path, object)
        defer { H5Aclose(attr) }
        if let buffer { try check(H5Awrite(attr, type, buffer), "H5Awrite", file.path, object) }
    }

    /// Sets a string attribute (scalar, variable-length UTF-8; h5py reads it as `str`).
    public func setAttribute(_ name: String, _ value: String) throws {
        let type = try makeVariableStringType(file.path, attributeObjectPath(path, name))
        defer { H5Tclose(type) }
        try withCStringArray([value], file.path, attributeObjectPath(path, name)) { pointers in
            try pointers.withUnsafeBufferPointer {
                try writeAttribute(name, type: type, shape: [], buffer: UnsafeRawPointer($0.baseAddress!))
            }
        }
    }

    /// Sets a scalar float64 attribute.
    public func setAttribute(_ name: String, _ value: Double) throws {
        try withUnsafeBytes(of: value) { try writeAttribute(name, type: Double.h5Type, shape: [], buffer: $0.baseAddress) }
    }

    /// Sets a scalar int64 attribute.
    public func setAttribute(_ name: String, _ value: Int) throws {
        try withUnsafeBytes(of: Int64(value)) { try writeAttribute(name, type: Int64.h5Type, shape: [], buffer: $0.baseAddress) }
    }

    /// Sets a 1-D float64 attribute (an empty array is stored with a null dataspace).
    public func setAttribute(_ name: String, _ values: [Double]) throws {
        try values.withUnsafeBytes {
            try writeAttribute(name, type: Double.h5Type, shape: values.isEmpty ? nil : [values.count], buffer: $0.baseAddress)
        }
    }

    /// Sets a 1-D int64 attribute (an empty array is stored with a null dataspace).
    public func setAttribute(_ name: String, _ values: [Int]) throws {
        let wide = values.map { Int64($0) }
        try wide.withUnsafeBytes {
            try writeAttribute(name, type: Int64.h5Type, shape: wide.isEmpty ? nil : [wide.count], buffer: $0.baseAddress)
        }
    }

    /// Opens attribute `name` and passes (attribute, file type, dataspace, element count) to `body`.
    private func withAttribute<R>(_ name: String, _ body: (hid_t, hid_t, hid_t, Int, String) throws -> R) throws -> R {
        let id = try liveID()
        let object = attributeObjectPath(path, name)
        guard !name.isEmpty, try check(H5Aexists(id, name), "H5Aexists", file.path, object) > 0 else {
            throw H5Error.notFound(file: file.path, object: object)
        }
        let attr = try check(H5Aopen(id, name, kv_H5P_DEFAULT()), "H5Aopen", file.path, object)
        defer { H5Aclose(attr) }
        let type = try check(H5Aget_type(attr), "H5Aget_type", file.path, object)
        defer { H5Tclose(type) }
        let space = try check(H5Aget_space(attr), "H5Aget_space", file.path, object)
        defer { H5Sclose(space) }
        let count = try dataspaceShape(space, file.path, object).count
        return try body(attr, type, space, count, object)
    }

    private func readNumericAttribute<T: H5NumericElement>(_ name: String, as: T.Type) throws -> [T] {
        try withAttribute(name) { attr, type, _, count, object in
            let cls = H5Tget_class(type)
            guard cls == H5T_INTEGER || (cls == H5T_FLOAT && !T.isInteger) else {
                throw H5Error.typeMismatch(file: file.path, object: object,
                                           expected: T.isInteger ? "an integer attribute" : "a numeric attribute",
                                           found: "\(className(cls)) attribute")
            }
            return try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                if count > 0 {
                    try check(H5Aread(attr, T.h5Type, buffer.baseAddress!), "H5Aread", file.path, object)
                }
                initialized = count
            }
        }
    }

    private func scalar<T>(_ values: [T], _ name: String) throws -> T {
        guard values.count == 1 else {
            throw H5Error.typeMismatch(file: file.path, object: attributeObjectPath(path, name),
                                       expected: "a single value", found: "\(values.count) values")
        }
        return values[0]
    }

    /// Reads a string attribute (variable- or fixed-length).
    public func stringAttribute(_ name: String) throws -> String {
        let values = try withAttribute(name) { attr, type, space, count, object in
            try readStringValues(fileType: type, space: space, count: count, file.path, object, noun: "attribute",
                                 read: { H5Aread(attr, $0, $1) }, readName: "H5Aread")
        }
        return try scalar(values, name)
    }

    /// Reads a scalar numeric attribute as Double (integers are converted).
    public func doubleAttribute(_ name: String) throws -> Double {
        try scalar(readNumericAttribute(name, as: Double.self), name)
    }

    /// Reads a scalar integer attribute.
    public func intAttribute(_ name: String) throws -> Int {
        Int(try scalar(readNumericAttribute(name, as: Int64.self), name))
    }

    /// Reads a numeric attribute of any shape as a flat [Double] (a scalar gives one element).
    public func doublesAttribute(_ name: String) throws -> [Double] {
        try readNumericAttribute(name, as: Double.self)
    }

    /// Reads an integer attribute of any shape as a flat [Int] (a scalar gives one element).
    public func intsAttribute(_ name: String) throws -> [Int] {
        try readNumericAttribute(name, as: Int64.self).map { Int($0) }
    }
}

// MARK: - Groups

/// A group: a directory of groups and datasets. Names may be paths ("a/b"); creating one makes
/// missing intermediate groups. Typed dataset writers and readers are in H5Typed.swift.
public final class H5Group: H5Object {
    /// A link-creation property list: create intermediate groups, UTF-8 link names.
    fileprivate func linkCreationList(_ object: String) throws -> hid_t {
        let lcpl = try check(H5Pcreate(H5P_CLS_LINK_CREATE_ID_g), "H5Pcreate", file.path, object)
        do {
            try check(H5Pset_create_intermediate_group(lcpl, 1), "H5Pset_create_intermediate_group", file.path, object)
            try check(H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), "H5Pset_char_encoding", file.path, object)
        } catch { H5Pclose(lcpl); throw error }
        return lcpl
    }

    fileprivate func validated(_ name: String) throws -> String {
        let object = joinObjectPath(path, name)
        if let problem = nameProblem(name) {
            throw H5Error.invalidArgument(file: file.path, object: object, reason: problem)
        }
        return object
    }

    /// Whether a group or dataset `name` (possibly a path) exists. False on any error.
    public func exists(_ name: String) -> Bool {
        guard nameProblem(name) == nil, let id = try? liveID() else { return false }
        let absolute = name.hasPrefix("/")
        var prefix = absolute ? "/" : ""
        for component in name.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix == "/" ? "" : "/") + component
            if H5Lexists(id, prefix, kv_H5P_DEFAULT()) <= 0 { return false }
        }
        return H5Oexists_by_name(id, name, kv_H5P_DEFAULT()) > 0
    }

    /// Creates the group `name` (and any missing intermediate groups). Throws `alreadyExists`.
    @discardableResult
    public func createGroup(_ name: String) throws -> H5Group {
        let object = try validated(name)
        let id = try writableID(object)
        if exists(name) { throw H5Error.alreadyExists(file: file.path, object: object) }
        let lcpl = try linkCreationList(object)
        defer { H5Pclose(lcpl) }
        let group = try check(H5Gcreate2(id, name, lcpl, kv_H5P_DEFAULT(), kv_H5P_DEFAULT()), "H5Gcreate2", file.path, object)
        return H5Group(file: file, id: group, path: object, ownsID: true)
    }

    /// Opens the object `name`, checking that it is of kind `kind` (H5I_GROUP or H5I_DATASET).
    private func openObject(_ name: String, kind: H5I_type_t, kindName: String) throws -> (hid_t, String) {
        let id = try liveID()
        let object = try validated(name)
        guard exists(name) else { throw H5Error.notFound(file: file.path, object: object) }
        let opened = try check(H5Oopen(id, name, kv_H5P_DEFAULT()), "H5Oopen", file.path, object)
        let actual = H5Iget_type(opened)
        guard actual == kind else {
            H5Oclose(opened)
            let found = actual == H5I_GROUP ? "a group" : actual == H5I_DATASET ? "a dataset" : "another kind of object"
            throw H5Error.typeMismatch(file: file.path, object: object, expected: kindName, found: found)
        }
        return (opened, object)
    }

    /// Opens the existing group `name`.
    public func group(_ name: String) throws -> H5Group {
        let (id, object) = try openObject(name, kind: H5I_GROUP, kindName: "a group")
        return H5Group(file: file, id: id, path: object, ownsID: true)
    }

    /// Opens the existing dataset `name`.
    public func dataset(_ name: String) throws -> H5Dataset {
        let (id, object) = try openObject(name, kind: H5I_DATASET, kindName: "a dataset")
        let dataset = H5Dataset(file: file, id: id, path: object, ownsID: true)
        let space = try check(H5Dget_space(id), "H5Dget_space", file.path, object)
        defer { H5Sclose(space) }
        dataset.shape = try dataspaceShape(space, file.path, object).shape
        return dataset
    }

    /// The names of the group's direct members (groups, datasets, links), sorted.
    public func memberNames() throws -> [String] {
        let id = try liveID()
        var info = H5G_info_t()
        try check(H5Gget_info(id, &info), "H5Gget_info", file.path, path)
        var names: [String] = []
        for index in 0 ..< info.nlinks {
            let length = try check(H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, kv_H5P_DEFAULT()),
                                   "H5Lget_name_by_idx", file.path, path)
            var buffer = [CChar](repeating: 0, count: Int(length) + 1)
            try check(H5Lget_name_by_idx(id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, kv_H5P_DEFAULT()),
                      "H5Lget_name_by_idx", file.path, path)
            names.append(String(decoding: buffer.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names.sorted()
    }

    /// Copies the object `name` (a group with everything under it, or a dataset, with attributes)
    /// into `destination` as `newName`, possibly across files (H5Ocopy). The data is copied verbatim.
    /// Refused (not crashed) when an object in the tree has more than 8 attributes: HDF5 before
    /// 1.14.4 (Debian's 1.10.8 included) can segfault copying those (HDFGroup/hdf5#2414).
    public func copy(_ name: String, to destination: H5Group, as newName: String) throws {
        let object = try validated(name)
        let id = try liveID()
        guard exists(name) else { throw H5Error.notFound(file: file.path, object: object) }
        if let heavy = try objectWithManyAttributes(name) {
            throw H5Error.invalidArgument(file: file.path, object: heavy,
                reason: "has more than 8 attributes; HDF5 1.10 H5Ocopy can crash on such objects (HDFGroup/hdf5#2414): copy its datasets and attributes one by one")
        }
        let target = try destination.validated(newName)
        let destID = try destination.writableID(target)
        if destination.exists(newName) { throw H5Error.alreadyExists(file: destination.file.path, object: target) }
        let lcpl = try destination.linkCreationList(target)
        defer { H5Pclose(lcpl) }
        try check(H5Ocopy(id, name, destID, newName, kv_H5P_DEFAULT(), lcpl), "H5Ocopy", destination.file.path, target)
    }

    /// The path of the first object at or under `name` with more than 8 attributes, if any.
    private func objectWithManyAttributes(_ name: String) throws -> String? {
        if (try? group(name)) != nil {
            let g = try group(name)
            if try g.attributeNames().count > 8 { return g.path }
            for member in try g.memberNames() {
                if let found = try g.objectWithManyAttributes(member) { return found }
            }
            return nil
        }
        let d = try dataset(name)
        return try d.attributeNames().count > 8 ? d.path : nil
    }

    /// Removes the link `name` (a group or dataset). HDF5 does not reclaim the space in the file.
    public func remove(_ name: String) throws {
        let object = try validated(name)
        let id = try writableID(object)
        guard exists(name) else { throw H5Error.notFound(file: file.path, object: object) }
        try check(H5Ldelete(id, name, kv_H5P_DEFAULT()), "H5Ldelete", file.path, object)
    }

    /// Creates dataset `name` of element type `T` with `shape`, gzip-compressed (chunked) when
    /// `gzip` (0…9) is given, and writes `values` (row-major).
    func writeNumeric<T: H5NumericElement>(_ name: String, _ values: [T], shape: [Int], gzip: Int?) throws -> H5Dataset {
        let object = try validated(name)
        let id = try writableID(object)
        guard let count = shapeElementCount(shape) else {
            throw H5Error.invalidArgument(file: file.path, object: object, reason: "invalid shape \(shape)")
        }
        guard count == values.count else {
            throw H5Error.shapeMismatch(file: file.path, object: object, shape: shape, count: values.count)
        }
        if let gzip, !(0 ... 9).contains(gzip) {
            throw H5Error.invalidArgument(file: file.path, object: object, reason: "gzip level \(gzip) is not in 0...9")
        }
        if exists(name) { throw H5Error.alreadyExists(file: file.path, object: object) }
        let space = try makeDataspace(shape, file.path, object)
        defer { H5Sclose(space) }
        let dcpl = try check(H5Pcreate(kv_H5P_DATASET_CREATE()), "H5Pcreate", file.path, object)
        defer { H5Pclose(dcpl) }
        if let gzip, count > 0, !shape.isEmpty {
            guard H5Zfilter_avail(H5Z_filter_t(H5Z_FILTER_DEFLATE)) > 0 else {
                throw H5Error.invalidArgument(file: file.path, object: object, reason: "this HDF5 library has no gzip filter")
            }
            let chunk = chunkShape(for: shape, elementSize: MemoryLayout<T>.stride).map { hsize_t($0) }
            try check(H5Pset_chunk(dcpl, Int32(chunk.count), chunk), "H5Pset_chunk", file.path, object)
            if MemoryLayout<T>.stride > 1 { try check(H5Pset_shuffle(dcpl), "H5Pset_shuffle", file.path, object) }
            try check(H5Pset_deflate(dcpl, UInt32(gzip)), "H5Pset_deflate", file.path, object)
        }
        let lcpl = try linkCreationList(object)
        defer { H5Pclose(lcpl) }
        let dataset = try check(H5Dcreate2(id, name, T.h5Type, space, lcpl, dcpl, kv_H5P_DEFAULT()), "H5Dcreate2", file.path, object)
        let handle = H5Dataset(file: file, id: dataset, path: object, ownsID: true)
        handle.shape = shape
        if count > 0 {
            _ = try values.withUnsafeBytes {
                try check(H5Dwrite(dataset, T.h5Type, kv_H5S_ALL(), kv_H5S_ALL(), kv_H5P_DEFAULT(), $0.baseAddress!),
                          "H5Dwrite", file.path, object)
            }
        }
        return handle
    }

    /// Creates the 1-D dataset `name` of variable-length UTF-8 strings.
    func writeStringDataset(_ name: String, _ strings: [String]) throws -> H5Dataset {
        let object = try validated(name)
        let id = try writableID(object)
        if exists(name) { throw H5Error.alreadyExists(file: file.path, object: object) }
        let type = try makeVariableStringType(file.path, object)
        defer { H5Tclose(type) }
        let space = try makeDataspace([strings.count], file.path, object)
        defer { H5Sclose(space) }
        return try withCStringArray(strings, file.path, object) { pointers in
            let lcpl = try linkCreationList(object)
            defer { H5Pclose(lcpl) }
            let dataset = try check(H5Dcreate2(id, name, type, space, lcpl, kv_H5P_DEFAULT(), kv_H5P_DEFAULT()),
                                    "H5Dcreate2", file.path, object)
            let handle = H5Dataset(file: file, id: dataset, path: object, ownsID: true)
            handle.shape = [strings.count]
            if !pointers.isEmpty {
                _ = try pointers.withUnsafeBufferPointer {
                    try check(H5Dwrite(dataset, type, kv_H5S_ALL(), kv_H5S_ALL(), kv_H5P_DEFAULT(), $0.baseAddress!),
                              "H5Dwrite", file.path, object)
                }
            }
            return handle
        }
    }
}

// MARK: - Datasets

/// An open dataset: its shape, its values (typed readers are in H5Typed.swift) and attributes.
public final class H5Dataset: H5Object {
    /// The dataset's shape when it was opened or written (`[]` for a scalar dataset).
    public internal(set) var shape: [Int] = []

    /// Reads all values as `T` (HDF5 converts numerically: float32 → float64, int32 → int64…;
    /// integers out of range saturate). Integer targets refuse floating-point datasets.
    func readNumeric<T: H5NumericElement>(as: T.Type) throws -> (values: [T], shape: [Int]) {
        let id = try liveID()
        let type = try check(H5Dget_type(id), "H5Dget_type", file.path, path)
        defer { H5Tclose(type) }
        let cls = H5Tget_class(type)
        guard cls == H5T_INTEGER || (cls == H5T_FLOAT && !T.isInteger) else {
            throw H5Error.typeMismatch(file: file.path, object: path,
                                       expected: "\(T.isInteger ? "an integer" : "a numeric") dataset (read as \(T.typeName))",
                                       found: "\(className(cls)) dataset")
        }
        let space = try check(H5Dget_space(id), "H5Dget_space", file.path, path)
        defer { H5Sclose(space) }
        let (shape, count) = try dataspaceShape(space, file.path, path)
        let values = try [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 {
                try check(H5Dread(id, T.h5Type, kv_H5S_ALL(), kv_H5S_ALL(), kv_H5P_DEFAULT(), buffer.baseAddress!),
                          "H5Dread", file.path, path)
            }
            initialized = count
        }
        return (values, shape)
    }

    /// Reads all values of a string dataset (variable- or fixed-length), flattened row-major.
    public func readStrings() throws -> (values: [String], shape: [Int]) {
        let id = try liveID()
        let type = try check(H5Dget_type(id), "H5Dget_type", file.path, path)
        defer { H5Tclose(type) }
        let space = try check(H5Dget_space(id), "H5Dget_space", file.path, path)
        defer { H5Sclose(space) }
        let (shape, count) = try dataspaceShape(space, file.path, path)
        let values = try readStringValues(fileType: type, space: space, count: count, file.path, path, noun: "dataset",
                                          read: { H5Dread(id, $0, kv_H5S_ALL(), kv_H5S_ALL(), kv_H5P_DEFAULT(), $1) },
                                          readName: "H5Dread")
        return (values, shape)
    }
}
