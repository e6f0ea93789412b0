import Foundation
import KVGGUF

/// Rewrites GGUF files for the loader's corruption tests: read a fixture, change its metadata or
/// tensors, write it back (an encoder of ggml docs/gguf.md independent of the parser under test).
struct GGUFTestWriter {
    var metadata: [(key: String, value: GGUFValue)]
    /// (name, dims in ggml order, type, raw bytes)
    var tensors: [(name: String, dims: [Int], type: GGMLType, bytes: [UInt8])]

    init(reading path: String) throws {
        let f = try GGUFFile(path: path)
        metadata = f.metadata.filter { $0.key != "general.alignment" }
        tensors = f.tensors.map { ($0.name, $0.dims, $0.type, Array(f.data($0))) }
    }

    subscript(key: String) -> GGUFValue? {
        get { metadata.first { $0.key == key }?.value }
        set {
            if let i = metadata.firstIndex(where: { $0.key == key }) {
                if let v = newValue { metadata[i].value = v } else { metadata.remove(at: i) }
            } else if let v = newValue { metadata.append((key, v)) }
        }
    }

    func bytes() -> [UInt8] {
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
        u32(3)
        u64(UInt64(tensors.count))
        u64(UInt64(metadata.count))
        for (k, v) in metadata { str(k); u32(typeOf(v)); put(v) }
        var offset = 0
        for t in tensors {
            str(t.name); u32(UInt32(t.dims.count)); t.dims.forEach { u64(UInt64($0)) }
            u32(t.type.rawValue); u64(UInt64(offset))
            offset += (t.bytes.count + 31) / 32 * 32
        }
        while out.count % 32 != 0 { out.append(0) }
        for t in tensors {
            out += t.bytes
            while out.count % 32 != 0 { out.append(0) }
        }
        return out
    }

    func write(to path: String) throws { try Data(bytes()).write(to: URL(fileURLWithPath: path)) }
}
