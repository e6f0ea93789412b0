import Foundation
internal import CHDF5

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
