// The typed public dataset API of KVHDF5 (thin wrappers; the HDF5 calls are in HDF5.swift and the H5File/H5Object/H5Group/H5Dataset files).

extension H5Group {
    // MARK: Writers. Values are row-major; `shape` `[]` is a scalar. `gzip` (0…9) chunks and
    // compresses the dataset (with the shuffle filter). An existing name throws `alreadyExists`.

    /// Writes a float32 dataset.
    @discardableResult
    public func write(_ name: String, floats: [Float], shape: [Int], gzip: Int? = nil) throws -> H5Dataset {
        try writeNumeric(name, floats, shape: shape, gzip: gzip)
    }

    /// Writes a float64 dataset.
    @discardableResult
    public func write(_ name: String, doubles: [Double], shape: [Int], gzip: Int? = nil) throws -> H5Dataset {
        try writeNumeric(name, doubles, shape: shape, gzip: gzip)
    }

    /// Writes an int32 dataset.
    @discardableResult
    public func write(_ name: String, int32s: [Int32], shape: [Int], gzip: Int? = nil) throws -> H5Dataset {
        try writeNumeric(name, int32s, shape: shape, gzip: gzip)
    }

    /// Writes an int64 dataset.
    @discardableResult
    public func write(_ name: String, int64s: [Int64], shape: [Int], gzip: Int? = nil) throws -> H5Dataset {
        try writeNumeric(name, int64s, shape: shape, gzip: gzip)
    }

    /// Writes a uint8 dataset.
    @discardableResult
    public func write(_ name: String, uint8s: [UInt8], shape: [Int], gzip: Int? = nil) throws -> H5Dataset {
        try writeNumeric(name, uint8s, shape: shape, gzip: gzip)
    }

    /// Writes a 1-D dataset of variable-length UTF-8 strings (h5py: `ds.asstr()[...]` gives `str`).
    /// Strings must not contain NUL characters.
    @discardableResult
    public func write(_ name: String, strings: [String]) throws -> H5Dataset {
        try writeStringDataset(name, strings)
    }

    // MARK: Readers (open the dataset, read everything, close it)

    /// The shape of dataset `name` (`[]` for a scalar).
    public func datasetShape(_ name: String) throws -> [Int] { try dataset(name).shape }

    /// Reads dataset `name` as float32 (any numeric dataset; HDF5 converts).
    public func readFloats(_ name: String) throws -> (values: [Float], shape: [Int]) { try dataset(name).readFloats() }

    /// Reads dataset `name` as float64 (any numeric dataset; HDF5 converts).
    public func readDoubles(_ name: String) throws -> (values: [Double], shape: [Int]) { try dataset(name).readDoubles() }

    /// Reads integer dataset `name` as int32.
    public func readInt32s(_ name: String) throws -> (values: [Int32], shape: [Int]) { try dataset(name).readInt32s() }

    /// Reads integer dataset `name` as int64.
    public func readInt64s(_ name: String) throws -> (values: [Int64], shape: [Int]) { try dataset(name).readInt64s() }

    /// Reads integer dataset `name` as uint8.
    public func readUInt8s(_ name: String) throws -> (values: [UInt8], shape: [Int]) { try dataset(name).readUInt8s() }

    /// Reads string dataset `name` (variable- or fixed-length), flattened row-major.
    public func readStrings(_ name: String) throws -> (values: [String], shape: [Int]) { try dataset(name).readStrings() }
}

extension H5Dataset {
    /// Reads all values as float32 (any numeric dataset; HDF5 converts).
    public func readFloats() throws -> (values: [Float], shape: [Int]) { try readNumeric(as: Float.self) }

    /// Reads all values as float64 (any numeric dataset; HDF5 converts).
    public func readDoubles() throws -> (values: [Double], shape: [Int]) { try readNumeric(as: Double.self) }

    /// Reads all values of an integer dataset as int32 (out-of-range values saturate).
    public func readInt32s() throws -> (values: [Int32], shape: [Int]) { try readNumeric(as: Int32.self) }

    /// Reads all values of an integer dataset as int64.
    public func readInt64s() throws -> (values: [Int64], shape: [Int]) { try readNumeric(as: Int64.self) }

    /// Reads all values of an integer dataset as uint8 (out-of-range values saturate).
    public func readUInt8s() throws -> (values: [UInt8], shape: [Int]) { try readNumeric(as: UInt8.self) }
}
