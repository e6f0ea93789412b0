import Foundation
import KVGGUF

/// Writes metadata-only GGUF v3 files for tokenizer tests (ggml docs/gguf.md: header, key/values,
/// no tensors, padded to the default 32-byte alignment).
struct GGUFMetadataWriter {
    var metadata: [(String, GGUFValue)] = []

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
        u32(3); u64(0); u64(UInt64(metadata.count))
        for (k, v) in metadata { str(k); u32(typeOf(v)); put(v) }
        while out.count % 32 != 0 { out.append(0) }
        return out
    }

    /// Writes the file into a fresh temporary path and returns it.
    func write(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "kvlab-\(getpid())-\(name).gguf"
        try Data(bytes()).write(to: URL(fileURLWithPath: path))
        return path
    }
}
