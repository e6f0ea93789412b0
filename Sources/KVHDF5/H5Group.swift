import Foundation
internal import CHDF5

// MARK: - Groups

/// A group: a directory of groups and datasets. Names may be paths ("a/b"); creating one makes
/// missing intermediate groups. Typed dataset writers and readers are in H5Typed.swift.
public final class H5Group: H5Object {
    /// A link-creation property list: create intermediate groups, UTF-8 link names.
    func linkCreationList(_ object: String) throws -> hid_t {
        let lcpl = try check(H5Pcreate(H5P_CLS_LINK_CREATE_ID_g), "H5Pcreate", file.path, object)
        do {
            try check(H5Pset_create_intermediate_group(lcpl, 1), "H5Pset_create_intermediate_group", file.path, object)
            try check(H5Pset_char_encoding(lcpl, H5T_CSET_UTF8), "H5Pset_char_encoding", file.path, object)
        } catch { H5Pclose(lcpl); throw error }
        return lcpl
    }

    func validated(_ name: String) throws -> String {
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
        if count > 0, !shape.isEmpty {
            let chunk = chunkShape(for: shape, elementSize: MemoryLayout<T>.stride).map { hsize_t($0) }
            try check(H5Pset_chunk(dcpl, Int32(chunk.count), chunk), "H5Pset_chunk", file.path, object)
            if let gzip {
                guard H5Zfilter_avail(H5Z_filter_t(H5Z_FILTER_DEFLATE)) > 0 else {
                    throw H5Error.invalidArgument(file: file.path, object: object, reason: "this HDF5 library has no gzip filter")
                }
                if MemoryLayout<T>.stride > 1 { try check(H5Pset_shuffle(dcpl), "H5Pset_shuffle", file.path, object) }
                try check(H5Pset_deflate(dcpl, UInt32(gzip)), "H5Pset_deflate", file.path, object)
            }
            try setChecksum(dcpl, object)
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
            // No Fletcher32 here: HDF5 refuses filters on variable-length types (the strings live in
            // its global heap); the file's integrity stamp covers them.
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

    /// Adds the Fletcher32 checksum filter (last, so it covers the stored bytes): a read of a
    /// chunk whose bytes changed fails with "data error detected by Fletcher32 checksum".
    private func setChecksum(_ dcpl: hid_t, _ object: String) throws {
        guard H5Zfilter_avail(H5Z_filter_t(H5Z_FILTER_FLETCHER32)) > 0 else {
            throw H5Error.invalidArgument(file: file.path, object: object, reason: "this HDF5 library has no Fletcher32 filter")
        }
        try check(H5Pset_fletcher32(dcpl), "H5Pset_fletcher32", file.path, object)
    }
}
