import Foundation
import KVGGUF
import KVTensor

/// Element type of a stored tensor.
public enum StorageDType: String, Sendable, Codable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16"
    public var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// One tensor's entry in a safetensors header.
public struct TensorInfo: Sendable {
    public let name: String
    public let dtype: StorageDType
    public let shape: [Int]
    public let byteRange: Range<Int>    // relative to the start of the data section
    public var elementCount: Int { shape.reduce(1, *) }
}

/// A safetensors file mapped read-only into memory (mmap): the header is parsed and every
/// entry is validated against the file size before any tensor is touched.
///
/// Format: u64 little-endian header length N, N bytes of JSON
/// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}, then the data.
public final class SafeTensorsFile {
    public let path: String
    public let tensors: [String: TensorInfo]
    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let dataOffset: Int

    /// Largest header accepted: real headers are kilobytes; this bounds what a corrupt length can allocate.
    public static let maxHeaderBytes = 100 << 20

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw FileManager.default.fileExists(atPath: path)
                ? ModelError.unreadable(file: path, reason: String(cString: strerror(errno)))
                : ModelError.fileNotFound(path)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ModelError.unreadable(file: path, reason: "stat failed") }
        let size = Int(st.st_size)
        guard size >= 8 else { throw ModelError.corruptCheckpoint(file: path, message: "file is \(size) bytes, shorter than the 8-byte header length") }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw ModelError.unreadable(file: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        let raw = UnsafeRawPointer(map)
        do {
            let headerLen = raw.loadUnaligned(as: UInt64.self).littleEndian
            guard headerLen <= UInt64(Self.maxHeaderBytes) else {
                throw ModelError.corruptCheckpoint(file: path, message: "header length \(headerLen) bytes is absurd (limit \(Self.maxHeaderBytes))")
            }
            guard Int(headerLen) <= size - 8 else {
                throw ModelError.corruptCheckpoint(file: path, message: "header length \(headerLen) exceeds the file size \(size) (truncated file?)")
            }
            let data = Data(bytes: raw + 8, count: Int(headerLen))
            let parsed = try Self.parseHeader(data, file: path, dataSize: size - 8 - Int(headerLen))
            tensors = parsed
            base = raw
            mappedLength = size
            dataOffset = 8 + Int(headerLen)
        } catch {
            munmap(map, size)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }

    static func parseHeader(_ data: Data, file: String, dataSize: Int) throws -> [String: TensorInfo] {
        let object: JSONValue
        do { object = try JSONValue.parse(data) } catch {
            throw ModelError.corruptCheckpoint(file: file, message: "header is not valid JSON")
        }
        guard let json = object.object else {
            throw ModelError.corruptCheckpoint(file: file, message: "header is not a JSON object")
        }
        var out: [String: TensorInfo] = [:]
        for (name, value) in json where name != "__metadata__" {
            guard let entry = value.object, let dt = entry["dtype"]?.string,
                  let shapeAny = entry["shape"]?.array, let offsAny = entry["data_offsets"]?.array,
                  offsAny.count == 2 else {
                throw ModelError.corruptCheckpoint(file: file, message: "tensor '\(name)': entry needs dtype, shape and two data_offsets")
            }
            guard let dtype = StorageDType(rawValue: dt) else {
                throw ModelError.unsupportedDType(file: file, tensor: name, dtype: dt)
            }
            let shape = try shapeAny.map { v -> Int in
                guard case .int(let n) = v, n >= 0, n < 1 << 40 else {
                    throw ModelError.corruptCheckpoint(file: file, message: "tensor '\(name)': bad shape \(JSONValue.array(shapeAny).brief)")
                }
                return n
            }
            let offs = try offsAny.map { v -> Int in
                guard case .int(let n) = v, n >= 0 else {
                    throw ModelError.corruptCheckpoint(file: file, message: "tensor '\(name)': bad data_offsets \(JSONValue.array(offsAny).brief)")
                }
                return n
            }
            var count = 1
            for s in shape {
                let (p, overflow) = count.multipliedReportingOverflow(by: s)
                guard !overflow, p < 1 << 40 else {
                    throw ModelError.corruptCheckpoint(file: file, message: "tensor '\(name)': shape \(shape) is too large")
                }
                count = p
            }
            guard offs[0] <= offs[1], offs[1] <= dataSize else {
                throw ModelError.corruptCheckpoint(file: file,
                    message: "tensor '\(name)': data_offsets \(offs) out of bounds (data section is \(dataSize) bytes; truncated file?)")
            }
            guard offs[1] - offs[0] == count * dtype.byteSize else {
                throw ModelError.corruptCheckpoint(file: file,
                    message: "tensor '\(name)': \(offs[1] - offs[0]) bytes for shape \(shape) of \(dt) (expected \(count * dtype.byteSize))")
            }
            out[name] = TensorInfo(name: name, dtype: dtype, shape: shape, byteRange: offs[0]..<offs[1])
        }
        return out
    }

    /// A 2-D tensor as a weight matrix: F16/BF16 kept 16-bit (copied out of the mapping) unless
    /// `precision` is .f32, F32 as Float32.
    public func matrix(_ name: String, precision: WeightPrecision = .stored) throws -> WeightMatrix {
        guard let info = tensors[name] else { throw ModelError.missingTensor(name: name, files: [path]) }
        precondition(info.shape.count == 2, "\(name): not a matrix")
        let (r, c) = (info.shape[0], info.shape[1])
        if precision == .f32 || info.dtype == .f32 { return WeightMatrix(floats: try floats(name), rows: r, cols: c) }
        return WeightMatrix(type: info.dtype == .f16 ? .f16 : .bf16, rows: r, cols: c,
                            copying: base + dataOffset + info.byteRange.lowerBound)
    }

    /// Converts a tensor to Float32 (row-major), whatever its stored precision.
    public func floats(_ name: String) throws -> [Float] {
        guard let info = tensors[name] else { throw ModelError.missingTensor(name: name, files: [path]) }
        let n = info.elementCount
        let src = base + dataOffset + info.byteRange.lowerBound
        return [Float](unsafeUninitializedCapacity: n) { buf, initialized in
            switch info.dtype {
            case .f32:
                UnsafeMutableRawPointer(buf.baseAddress!).copyMemory(from: src, byteCount: n * 4)
            case .f16:
                for i in 0..<n { buf[i] = Precision.halfToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            case .bf16:
                for i in 0..<n { buf[i] = Precision.bfloat16ToFloat(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
            }
            initialized = n
        }
    }
}
