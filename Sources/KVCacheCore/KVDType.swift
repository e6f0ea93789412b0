import Foundation
import KVTensor

/// The precision of the KV cache's float rows (`kv_dtype`, docs/config.md): the full cache and
/// every store that keeps keys and values as floats (eviction stores, Quest/Loki's stores, KIVI's
/// residual, MiniCache's unmerged rows, pooled heads). Keys and values are rounded to it when they
/// are appended; attention kernels read the stored elements and convert them in registers.
/// Policy metadata (Quest's page bounds, Loki's low-rank copy, KIVI's scales, MiniCache's merged
/// directions and norms) stays Float32. f32 is the default and reproduces every earlier result.
public enum KVDType: String, CaseIterable, Sendable, Codable {
    case f32, f16, bf16

    /// Bytes of one stored element.
    public var bytes: Int {
        switch self { case .f32: return 4; case .f16, .bf16: return 2 }
    }

    /// Reads a config or command-line value; the error names what is accepted.
    public init(parsing text: String) throws {
        guard let t = KVDType(rawValue: text.lowercased()) else { throw KVDTypeError(value: text) }
        self = t
    }

    /// Empty float rows of this precision for one (layer, KV head).
    public func makeRows(headDim: Int, initialCapacity: Int = 64) -> any ElementRows {
        switch self {
        case .f32: return Float32Rows(headDim: headDim, initialCapacity: initialCapacity)
        case .f16: return Float16Rows(headDim: headDim, initialCapacity: initialCapacity)
        case .bf16: return BFloat16Rows(headDim: headDim, initialCapacity: initialCapacity)
        }
    }
}

/// A `kv_dtype` value that is not one of f32, f16, bf16.
public struct KVDTypeError: LocalizedError, Equatable {
    public let value: String
    public var errorDescription: String? {
        "kv_dtype: expected one of \(KVDType.allCases.map(\.rawValue).joined(separator: ", ")), got '\(value)'"
    }
}

/// One stored element of a float row: Float32, IEEE binary16 or bfloat16.
public protocol KVElement {
    static var dtype: KVDType { get }
    /// x rounded to the element (round to nearest, ties to even).
    init(rounding x: Float)
    /// The element as Float32 (exact).
    var float: Float { get }
    /// Eight elements p[i..<i+8] as Float32 (converted in registers).
    static func load8(_ p: UnsafePointer<Self>, _ i: Int) -> SIMD8<Float>
}

extension Float: KVElement {
    public static var dtype: KVDType { .f32 }
    @inline(__always) public init(rounding x: Float) { self = x }
    @inline(__always) public var float: Float { self }
    @inline(__always) public static func load8(_ p: UnsafePointer<Float>, _ i: Int) -> SIMD8<Float> {
        UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<Float>.self)
    }
}

/// IEEE binary16 bits (the cache's f16 element; hardware F16C conversion on x86-64 with
/// `-target-cpu haswell`). Beyond +-65504 a value rounds to +-infinity, as in llama.cpp's F16 cache.
public struct Half: KVElement, Equatable {
    public var bits: UInt16
    public static var dtype: KVDType { .f16 }
    @inline(__always) public init(bits: UInt16) { self.bits = bits }
    @inline(__always) public init(rounding x: Float) { bits = Precision.floatToHalf(x) }
    @inline(__always) public var float: Float { Precision.halfToFloat(bits) }
    @inline(__always) public static func load8(_ p: UnsafePointer<Half>, _ i: Int) -> SIMD8<Float> {
        let u = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<UInt16>.self)
        #if arch(x86_64) || arch(arm64)
        return SIMD8<Float>(unsafeBitCast(u, to: SIMD8<Float16>.self))
        #else
        var out = SIMD8<Float>()
        for k in 0..<8 { out[k] = Precision.halfToFloat(u[k]) }
        return out
        #endif
    }
}

/// bfloat16 bits: the upper half of a Float32 (the cache's bf16 element).
public struct BFloat16: KVElement, Equatable {
    public var bits: UInt16
    public static var dtype: KVDType { .bf16 }
    @inline(__always) public init(bits: UInt16) { self.bits = bits }
    @inline(__always) public init(rounding x: Float) { bits = Precision.floatToBFloat16(x) }
    @inline(__always) public var float: Float { Precision.bfloat16ToFloat(bits) }
    @inline(__always) public static func load8(_ p: UnsafePointer<BFloat16>, _ i: Int) -> SIMD8<Float> {
        let u = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD8<UInt16>.self)
        return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: u) &<< 16, to: SIMD8<Float>.self)
    }
}
