import Foundation

/// A decoder of one ggml block: `elements` weights stored in `bytes` bytes (the layouts of
/// ggml-common.h, decoded as ggml-quants.c's `dequantize_row_*` and gguf-py's quants.py do).
///
/// Each conforming type documents its block layout. `decode` reads exactly `bytes` bytes at
/// `block` (no alignment needed: GGUF blocks of 18, 20, 22... bytes sit at any address) and
/// writes `elements` Float32 values. Decoders are stateless and generic code that calls them is
/// specialised per type, so a fused kernel (e.g. a quantized matrix-vector product that decodes a
/// block into registers and multiplies at once) can reuse them block by block.
public protocol GGMLBlockDecoder {
    static var type: GGMLType { get }
    static func decode(_ block: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>)
}

extension GGMLBlockDecoder {
    public static var elements: Int { type.blockSize }
    public static var bytes: Int { type.blockBytes }

    /// Decodes `count` elements (a multiple of `elements`) stored from `src` into `dst`.
    @inline(__always)
    public static func decodeRow(_ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(count % elements == 0, "\(type.name): \(count) elements is not a multiple of the block size \(elements)")
        let n = count / elements, be = elements, bb = bytes
        for i in 0..<n { decode(src + i * bb, into: dst + i * be) }
    }
}

extension GGMLType {
    /// Types KVLab dequantizes, in ggml's order.
    public static let supported: [GGMLType] = [.f32, .f16, .bf16, .q4_0, .q4_1, .q5_0, .q5_1, .q8_0,
                                               .q2_K, .q3_K, .q4_K, .q5_K, .q6_K]

    public var isSupported: Bool { decoder != nil }

    /// The block decoder of this type, nil when KVLab cannot dequantize it.
    public var decoder: GGMLBlockDecoder.Type? {
        switch self {
        case .f32: return BlockF32.self
        case .f16: return BlockF16.self
        case .bf16: return BlockBF16.self
        case .q4_0: return BlockQ4_0.self
        case .q4_1: return BlockQ4_1.self
        case .q5_0: return BlockQ5_0.self
        case .q5_1: return BlockQ5_1.self
        case .q8_0: return BlockQ8_0.self
        case .q2_K: return BlockQ2_K.self
        case .q3_K: return BlockQ3_K.self
        case .q4_K: return BlockQ4_K.self
        case .q5_K: return BlockQ5_K.self
        case .q6_K: return BlockQ6_K.self
        default: return nil
        }
    }
}

/// Dequantization of whole rows and tensors.
public enum GGMLDequantize {
    /// Decodes `count` elements of `type` (a multiple of its block size) from `src` into `dst`.
    /// Precondition: the type is supported (check `type.isSupported` or use `GGUFFile.floats`).
    public static func row(_ type: GGMLType, _ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>, count: Int) {
        guard let d = type.decoder else { preconditionFailure("\(type.name) cannot be dequantized") }
        // Open the existential once; the generic body is specialised per decoder.
        func run<D: GGMLBlockDecoder>(_: D.Type) { D.decodeRow(src, into: dst, count: count) }
        run(d)
    }

    /// Decodes `rows` rows of `rowLength` elements each, splitting large tensors across threads.
    public static func rows(_ type: GGMLType, _ src: UnsafeRawPointer, into dst: UnsafeMutablePointer<Float>,
                            rows: Int, rowLength: Int) {
        let rowBytes = rowLength / type.blockSize * type.blockBytes
        let total = rows * rowLength
        let chunks = total >= 1 << 20 ? min(rows, 8) : 1
        if chunks == 1 { return row(type, src, into: dst, count: total) }
        let per = (rows + chunks - 1) / chunks
        let s = UInt(bitPattern: src), d = UInt(bitPattern: dst)
        DispatchQueue.concurrentPerform(iterations: chunks) { c in
            let r0 = c * per, r1 = min(rows, r0 + per)
            guard r0 < r1 else { return }
            row(type, UnsafeRawPointer(bitPattern: s)! + r0 * rowBytes,
                into: UnsafeMutablePointer<Float>(bitPattern: d)! + r0 * rowLength, count: (r1 - r0) * rowLength)
        }
    }
}

extension GGUFFile {
    /// A tensor's elements as Float32 in row-major (PyTorch) order, dequantized from its blocks.
    /// An unsupported type is a `GGUFError` naming the file, the tensor, the type and the supported types.
    public func floats(_ info: GGUFTensorInfo) throws -> [Float] {
        guard info.type.isSupported else {
            throw GGUFError(file: path, "tensor '\(info.name)' has type \(info.type.name), which KVLab cannot dequantize " +
                "(supported: \(GGMLType.supported.map(\.name).joined(separator: ", ")))")
        }
        let raw = data(info)
        let n = info.elementCount
        return [Float](unsafeUninitializedCapacity: n) { buf, done in
            GGMLDequantize.rows(info.type, raw.baseAddress!, into: buf.baseAddress!, rows: n / info.dims[0], rowLength: info.dims[0])
            done = n
        }
    }
}

// MARK: - Shared helpers

/// IEEE binary16 -> Float32 (hardware conversion where Swift has Float16).
@inline(__always)
func halfToFloat(_ bits: UInt16) -> Float {
    #if arch(x86_64) || arch(arm64)
    return Float(Float16(bitPattern: bits))
    #else
    let sign = UInt32(bits & 0x8000) << 16
    let exp = Int((bits >> 10) & 0x1F), mant = UInt32(bits & 0x3FF)
    if exp == 0 {
        let v = Float(mant) / 1024 / 16384
        return sign != 0 ? -v : v
    }
    if exp == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mant << 13)) }
    return Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
    #endif
}

extension UnsafeRawPointer {
    @inline(__always) func u8(_ o: Int) -> UInt8 { load(fromByteOffset: o, as: UInt8.self) }
    @inline(__always) func i8(_ o: Int) -> Int8 { load(fromByteOffset: o, as: Int8.self) }
    @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    /// An fp16 field as Float32.
    @inline(__always) func half(_ o: Int) -> Float { halfToFloat(u16(o)) }
}

// MARK: - Unquantized types (one element per "block")

/// F32: one little-endian IEEE binary32 per element.
public enum BlockF32: GGMLBlockDecoder {
    public static let type = GGMLType.f32
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        y[0] = Float(bitPattern: b.u32(0))
    }
}

/// F16: one IEEE binary16 per element.
public enum BlockF16: GGMLBlockDecoder {
    public static let type = GGMLType.f16
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) { y[0] = b.half(0) }
}

/// BF16: the upper 16 bits of a binary32 (ggml_bf16_to_fp32: bits << 16).
public enum BlockBF16: GGMLBlockDecoder {
    public static let type = GGMLType.bf16
    @inline(__always)
    public static func decode(_ b: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>) {
        y[0] = Float(bitPattern: UInt32(b.u16(0)) << 16)
    }
}
