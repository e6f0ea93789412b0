import Foundation
internal import CHDF5

// MARK: - Objects and attributes

/// A group or dataset of an open file; carries attributes. See `H5Group` and `H5Dataset`.
public class H5Object {
    /// The file the object belongs to (kept open while the object lives).
    public let file: H5File
    /// The absolute path of the object inside the file, e.g. "/runs/r1".
    public let path: String
    var id: hid_t
    private let ownsID: Bool

    init(file: H5File, id: hid_t, path: String, ownsID: Bool) {
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
    func invalidate() {
        prepareLibrary()
        if ownsID && id >= 0 { H5Oclose(id) }
        id = -1
    }

    /// The identifier, or `fileClosed`. Also prepares the library for the calling thread.
    func liveID() throws -> hid_t {
        prepareLibrary()
        guard file.isOpen, id >= 0 else { throw H5Error.fileClosed(file: file.path) }
        return id
    }

    /// The identifier for a modification of `object`: `fileClosed` or `readOnly` otherwise.
    func writableID(_ object: String) throws -> hid_t {
        let id = try liveID()
        guard file.isWritable else { throw H5Error.readOnly(file: file.path, object: object) }
        return id
    }

    func fail(_ function: String, _ object: String? = nil) -> H5Error {
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
