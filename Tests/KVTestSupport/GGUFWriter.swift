import Foundation
import KVGGUF

/// Writes small GGUF v3 files for tests: an encoder of the format in ggml docs/gguf.md independent of
/// the parser under test, with hooks to corrupt any field (counts, alignment, values, tensors).
/// Build one from scratch, or from an existing file (`init(reading:)`) to change and write back.
public struct GGUFWriter {
    public var version: UInt32
    public var metadata: [(key: String, value: GGUFValue)]
    /// (name, dims in ggml order, type, raw block bytes)
    public var tensors: [(name: String, dims: [Int], type: GGMLType, bytes: [UInt8])]
    public var alignment: Int
    /// Overrides for the header counts (nil = the real counts).
    public var tensorCountOverride: UInt64? = nil
    public var kvCountOverride: UInt64? = nil

    public init(version: UInt32 = 3, metadata: [(key: String, value: GGUFValue)] = [],
                tensors: [(name: String, dims: [Int], type: GGMLType, bytes: [UInt8])] = [], alignment: Int = 32) {
        self.version = version; self.metadata = metadata; self.tensors = tensors; self.alignment = alignment
    }

    /// The metadata and tensors of an existing file (its alignment key dropped: the writer pads to 32).
    public init(reading path: String) throws {
        let f = try GGUFFile(path: path)
        self.init(metadata: f.metadata.filter { $0.key != "general.alignment" },
                  tensors: f.tensors.map { ($0.name, $0.dims, $0.type, Array(f.data($0))) })
    }

    /// A metadata value by key; setting nil removes it.
    public subscript(key: String) -> GGUFValue? {
        get { metadata.first { $0.key == key }?.value }
        set {
            if let i = metadata.firstIndex(where: { $0.key == key }) {
                if let v = newValue { metadata[i].value = v } else { metadata.remove(at: i) }
            } else if let v = newValue { metadata.append((key, v)) }
        }
    }

    public func bytes() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
        func typeOf(_ v: GGUFValue) -> UInt32 {
            switch v {
            case .uint: return 10
            case .int: return 11
            case .float: return 12
            case .bool: return 7
            case .string: return 8
            case .array: return 9
            }
        }
        func put(_ v: GGUFValue) {
            switch v {
            case .uint(let u): u64(u)
            case .int(let i): u64(UInt64(bitPattern: i))
            case .float(let f): u64(f.bitPattern)
            case .bool(let b): out.append(b ? 1 : 0)
            case .string(let s): str(s)
            case .array(let a): u32(a.first.map(typeOf) ?? 10); u64(UInt64(a.count)); a.forEach(put)
            }
        }
        u32(version)
        u64(tensorCountOverride ?? UInt64(tensors.count))
        u64(kvCountOverride ?? UInt64(metadata.count))
        for (k, v) in metadata { str(k); u32(typeOf(v)); put(v) }
        var offset = 0
        for t in tensors {
            str(t.name); u32(UInt32(t.dims.count)); t.dims.forEach { u64(UInt64($0)) }
            u32(t.type.rawValue); u64(UInt64(offset))
            offset += (t.bytes.count + alignment - 1) / alignment * alignment
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out += t.bytes
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }

    public func write(to path: String) throws { try Data(bytes()).write(to: URL(fileURLWithPath: path)) }

    /// Writes the file into a fresh temporary path and returns it.
    public func writeTemporary(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "kvlab-\(getpid())-\(name).gguf"
        try write(to: path)
        return path
    }
}
