import Foundation
@testable import KVGGUF

/// Writes small GGUF files for tests (an independent encoder of the format in ggml docs/gguf.md),
/// with hooks to corrupt any field.
struct GGUFWriter {
    var version: UInt32 = 3
    var metadata: [(String, GGUFValue)] = []
    /// (name, dims in ggml order, type, raw block bytes)
    var tensors: [(String, [Int], GGMLType, [UInt8])] = []
    var alignment = 32
    /// Overrides for the header counts (nil = the real counts).
    var tensorCountOverride: UInt64? = nil
    var kvCountOverride: UInt64? = nil

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
            case .array(let a):
                u32(a.first.map(typeOf) ?? 10); u64(UInt64(a.count)); a.forEach(put)
            }
        }
        u32(version)
        u64(tensorCountOverride ?? UInt64(tensors.count))
        u64(kvCountOverride ?? UInt64(metadata.count))
        for (k, v) in metadata { str(k); u32(typeOf(v)); put(v) }
        var offset = 0
        var offsets: [Int] = []
        for (name, dims, type, data) in tensors {
            str(name); u32(UInt32(dims.count)); dims.forEach { u64(UInt64($0)) }
            u32(type.rawValue); u64(UInt64(offset))
            offsets.append(offset)
            offset += (data.count + alignment - 1) / alignment * alignment
        }
        while out.count % alignment != 0 { out.append(0) }
        for (i, t) in tensors.enumerated() {
            precondition(out.count >= 0 && offsets[i] >= 0)
            out += t.3
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }

    func write(to path: String) throws { try Data(bytes()).write(to: URL(fileURLWithPath: path)) }
}
