// KVHDF5: a small, safe Swift wrapper over the HDF5 C library (1.10+).
//
// Only the KVHDF5 module imports CHDF5: every HDF5 call lives in its files (this one: set-up,
// errors, element types and shared helpers; H5File, H5Object, H5Group, H5Dataset). Conventions:
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
@inline(__always) func prepareLibrary() {
    _ = libraryInitialized
    kv_silence_errors()
}

/// HDF5's at-exit clean-up (H5_term_library) is turned off: KVHDF5 closes every file it opens, so
/// it has nothing left to do, and in HDF5 1.10 it crashes on any identifier a failed close left
/// half torn down (defence in depth: in-memory files make such failures unlikely, H5Image.swift).
let libraryInitialized: Void = { _ = H5dont_atexit(); _ = H5open() }()

final class ErrorMessages { var items: [String] = [] }

/// The messages on the calling thread's HDF5 error stack, outermost first.
func errorStackDetail() -> String {
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

func libraryError(_ function: String, _ file: String, _ object: String) -> H5Error {
    .libraryCall(function: function, file: file, object: object, detail: errorStackDetail())
}

/// Throws when `status` (herr_t, htri_t, ssize_t or hid_t) is negative; returns it otherwise.
@discardableResult
func check<T: BinaryInteger>(_ status: T, _ function: String, _ file: String, _ object: String) throws -> T {
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

func className(_ cls: H5T_class_t) -> String {
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
func makeVariableStringType(_ file: String, _ object: String) throws -> hid_t {
    let type = try check(H5Tcopy(kv_H5T_C_S1()), "H5Tcopy", file, object)
    do {
        try check(H5Tset_size(type, kv_H5T_VARIABLE()), "H5Tset_size", file, object)
        try check(H5Tset_cset(type, H5T_CSET_UTF8), "H5Tset_cset", file, object)
        try check(H5Tset_strpad(type, H5T_STR_NULLTERM), "H5Tset_strpad", file, object)
    } catch { H5Tclose(type); throw error }
    return type
}

/// A dataspace for `shape` (scalar for `[]`); the caller closes it.
func makeDataspace(_ shape: [Int], _ file: String, _ object: String) throws -> hid_t {
    if shape.isEmpty { return try check(H5Screate(H5S_SCALAR), "H5Screate", file, object) }
    let dims = shape.map { hsize_t($0) }
    return try check(H5Screate_simple(Int32(dims.count), dims, nil), "H5Screate_simple", file, object)
}

/// The shape and element count of a dataspace.
func dataspaceShape(_ space: hid_t, _ file: String, _ object: String) throws -> (shape: [Int], count: Int) {
    let rank = Int(try check(H5Sget_simple_extent_ndims(space), "H5Sget_simple_extent_ndims", file, object))
    var dims = [hsize_t](repeating: 0, count: rank)
    if rank > 0 { try check(H5Sget_simple_extent_dims(space, &dims, nil), "H5Sget_simple_extent_dims", file, object) }
    let count = Int(try check(H5Sget_simple_extent_npoints(space), "H5Sget_simple_extent_npoints", file, object))
    return (dims.map { Int($0) }, count)
}

/// Encodes strings as a NUL-separated UTF-8 block and calls `body` with one C pointer per string.
func withCStringArray<R>(_ strings: [String], _ file: String, _ object: String,
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
func readStringValues(fileType: hid_t, space: hid_t, count: Int, _ file: String, _ object: String, noun: String,
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
