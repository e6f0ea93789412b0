/// How a store quantizes its older tokens (KIVI): asymmetric min-max integer codes.
/// - keys: per channel, in groups of `groupSize` consecutive tokens (each group has a min and a
///   scale per channel);
/// - values: per token, in groups of `groupSize` channels (min and scale per token and group);
/// - the newest `residual` tokens (at least) stay Float32.
public struct QuantizationSpec: Hashable, Sendable {
    public var bits: Int          // 2, 4 or 8
    public var groupSize: Int     // G
    public var residual: Int      // R, a multiple of G
    public init(bits: Int, groupSize: Int, residual: Int) {
        precondition([2, 4, 8].contains(bits), "quantization: bits must be 2, 4 or 8")
        precondition(groupSize >= 1 && residual >= 0 && residual % groupSize == 0, "quantization: residual must be a multiple of the group size")
        self.bits = bits; self.groupSize = groupSize; self.residual = residual
    }
    /// Largest code, 2^b - 1.
    public var maxCode: Int { (1 << bits) - 1 }
}

/// The quantized tokens of one `HeadStore` (its oldest `count` tokens, store indices [0, count)).
///
/// Layout (all bytes counted by `payloadBytes`, nothing else is held for these tokens):
/// - key codes  [count, rowBytes] UInt8: a token's d codes packed along the channels, 8/b codes a
///   byte, channel c at byte c / (8/b), bits (c % (8/b)) * b;
/// - value codes [count, rowBytes] UInt8, packed the same way;
/// - value mins and scales [count, 2 * vg] Float32 (vg = ceil(d / G) channel groups: mins, then scales);
/// - key groups: mins and scales [groups, 2 * d] Float32, and the number of tokens each group
///   still holds (Int32, metadata). A group covers consecutive store indices; evicting tokens removes
///   their codes and leaves the group's mins/scales valid for the rest; an empty group is freed.
public final class QuantizedStore {
    public let spec: QuantizationSpec
    public let headDim: Int
    /// Bytes of one token's packed codes (keys or values).
    public let rowBytes: Int
    /// Channel groups per value row.
    public let valueGroups: Int
    public private(set) var count = 0
    public private(set) var capacity = 0
    public private(set) var keyCodes: UnsafeMutablePointer<UInt8>
    public private(set) var valueCodes: UnsafeMutablePointer<UInt8>
    public private(set) var valueParams: UnsafeMutablePointer<Float>     // [capacity, 2 * valueGroups]
    /// Key groups: [groups, 2d] (min [d], then scale [d]).
    public private(set) var keyParams: [Float] = []
    /// Tokens held by each key group, and the store index of each group's first token (+ count at the end).
    public private(set) var groupCounts: [Int32] = []
    public private(set) var groupStarts: [Int] = [0]
    /// codes per byte and the unpacking table: byte -> its 8/b codes as floats.
    let perByte: Int
    let unpackTable: [Float]

    public init(spec: QuantizationSpec, headDim d: Int) {
        self.spec = spec; headDim = d
        perByte = 8 / spec.bits
        rowBytes = (d + perByte - 1) / perByte
        valueGroups = (d + spec.groupSize - 1) / spec.groupSize
        var t = [Float](repeating: 0, count: 256 * perByte)
        let mask = (1 << spec.bits) - 1
        for b in 0..<256 { for i in 0..<perByte { t[b * perByte + i] = Float((b >> (i * spec.bits)) & mask) } }
        unpackTable = t
        keyCodes = .allocate(capacity: 1); valueCodes = .allocate(capacity: 1); valueParams = .allocate(capacity: 1)
    }

    deinit { keyCodes.deallocate(); valueCodes.deallocate(); valueParams.deallocate() }

    public var groups: Int { groupCounts.count }
    /// Codes + scales + zero points (mins) held.
    public var payloadBytes: Int {
        count * (2 * rowBytes + 2 * valueGroups * MemoryLayout<Float>.stride) + keyParams.count * MemoryLayout<Float>.stride
    }
    /// Per-group token counts.
    public var metadataBytes: Int { groupCounts.count * MemoryLayout<Int32>.stride }
    public var allocatedBytes: Int {
        capacity * (2 * rowBytes + 2 * valueGroups * MemoryLayout<Float>.stride)
            + keyParams.capacity * MemoryLayout<Float>.stride + groupCounts.capacity * MemoryLayout<Int32>.stride
    }

    func reserve(_ n: Int) {
        guard n > capacity else { return }
        let cap = max(n, capacity * 2, 64), pv = 2 * valueGroups
        let k = UnsafeMutablePointer<UInt8>.allocate(capacity: cap * rowBytes)
        let v = UnsafeMutablePointer<UInt8>.allocate(capacity: cap * rowBytes)
        let p = UnsafeMutablePointer<Float>.allocate(capacity: cap * pv)
        k.update(from: keyCodes, count: count * rowBytes)
        v.update(from: valueCodes, count: count * rowBytes)
        p.update(from: valueParams, count: count * pv)
        keyCodes.deallocate(); valueCodes.deallocate(); valueParams.deallocate()
        keyCodes = k; valueCodes = v; valueParams = p; capacity = cap
    }

    @inline(__always)
    static func code(_ x: Float, min m: Float, scale s: Float, maxCode: Float) -> UInt8 {
        guard s > 0 else { return 0 }
        let c = ((x - m) / s).rounded(.toNearestOrEven)
        return UInt8(Swift.min(Swift.max(c, 0), maxCode))
    }

    /// Quantizes `rows` consecutive tokens (keys and values [rows, d], Float32) as one new key
    /// group appended after the quantized tokens.
    public func appendGroup(keys: UnsafePointer<Float>, values: UnsafePointer<Float>, rows: Int) {
        guard rows > 0 else { return }
        let d = headDim, mc = Float(spec.maxCode), b = spec.bits, gs = spec.groupSize, pv = 2 * valueGroups
        reserve(count + rows)
        // Keys: per channel over the group's tokens.
        var mins = [Float](repeating: .infinity, count: d), maxs = [Float](repeating: -.infinity, count: d)
        for r in 0..<rows { let k = keys + r * d; for c in 0..<d { mins[c] = Swift.min(mins[c], k[c]); maxs[c] = Swift.max(maxs[c], k[c]) } }
        let scales = (0..<d).map { (maxs[$0] - mins[$0]) / mc }
        keyParams += mins; keyParams += scales
        for r in 0..<rows {
            let k = keys + r * d, out = keyCodes + (count + r) * rowBytes
            out.initialize(repeating: 0, count: rowBytes)
            for c in 0..<d {
                out[c / perByte] |= Self.code(k[c], min: mins[c], scale: scales[c], maxCode: mc) << UInt8((c % perByte) * b)
            }
        }
        // Values: per token over groups of G channels.
        for r in 0..<rows {
            let v = values + r * d, out = valueCodes + (count + r) * rowBytes, par = valueParams + (count + r) * pv
            out.initialize(repeating: 0, count: rowBytes)
            for vg in 0..<valueGroups {
                let lo = vg * gs, hi = Swift.min(lo + gs, d)
                var mn = Float.infinity, mx = -Float.infinity
                for c in lo..<hi { mn = Swift.min(mn, v[c]); mx = Swift.max(mx, v[c]) }
                let s = (mx - mn) / mc
                par[vg] = mn; par[valueGroups + vg] = s
                for c in lo..<hi {
                    out[c / perByte] |= Self.code(v[c], min: mn, scale: s, maxCode: mc) << UInt8((c % perByte) * b)
                }
            }
        }
        count += rows
        groupCounts.append(Int32(rows))
        groupStarts.append(count)
    }

    /// Key group of quantized token `i` (binary search over the group starts).
    public func group(of i: Int) -> Int {
        var lo = 0, hi = groupCounts.count - 1
        while lo < hi { let mid = (lo + hi + 1) / 2; if groupStarts[mid] <= i { lo = mid } else { hi = mid - 1 } }
        return lo
    }

    /// Unpacks a row of packed codes into `out` (at least rowBytes * 8/b floats).
    @inline(__always)
    func unpack(_ codes: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>) {
        unpackTable.withUnsafeBufferPointer { t in
            let tb = t.baseAddress!
            switch perByte {
            case 4:
                for i in 0..<rowBytes {
                    UnsafeMutableRawPointer(out + 4 * i).storeBytes(of: UnsafeRawPointer(tb + 4 * Int(codes[i])).loadUnaligned(as: SIMD4<Float>.self), as: SIMD4<Float>.self)
                }
            case 2:
                for i in 0..<rowBytes {
                    UnsafeMutableRawPointer(out + 2 * i).storeBytes(of: UnsafeRawPointer(tb + 2 * Int(codes[i])).loadUnaligned(as: SIMD2<Float>.self), as: SIMD2<Float>.self)
                }
            default:
                for i in 0..<rowBytes { out[i] = Float(codes[i]) }
            }
        }
    }

    /// Scratch length `unpack` needs.
    public var unpackLength: Int { rowBytes * perByte }

    /// Dequantized key of quantized token i: min + scale * code per channel. out: [d]
    public func dequantizeKey(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        let d = headDim, g = group(of: i)
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: unpackLength)
        defer { tmp.deallocate() }
        unpack(keyCodes + i * rowBytes, into: tmp)
        keyParams.withUnsafeBufferPointer { kp in
            let m = kp.baseAddress! + g * 2 * d, s = m + d
            for c in 0..<d { out[c] = m[c] + s[c] * tmp[c] }
        }
    }

    /// Dequantized value of quantized token i. out: [d]
    public func dequantizeValue(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        let tmp = UnsafeMutablePointer<Float>.allocate(capacity: unpackLength)
        defer { tmp.deallocate() }
        unpack(valueCodes + i * rowBytes, into: tmp)
        dequantizeValueRow(codes: tmp, params: valueParams + i * 2 * valueGroups, into: out)
    }

    /// v_c = min_k + scale_k * x_c for channel group k of c.
    @inline(__always)
    func dequantizeValueRow(codes x: UnsafePointer<Float>, params par: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>) {
        let d = headDim, gs = spec.groupSize
        for vg in 0..<valueGroups {
            let m = par[vg], s = par[valueGroups + vg], lo = vg * gs, hi = Swift.min(lo + gs, d)
            for c in lo..<hi { out[c] = m + s * x[c] }
        }
    }

    /// Keeps the quantized tokens at `indices` (increasing, < count); frees emptied key groups.
    public func retain(_ indices: [Int]) {
        let pv = 2 * valueGroups, d = headDim
        var newCounts = [Int32](repeating: 0, count: groupCounts.count)
        var w = 0, g = 0
        for i in indices {
            precondition(i >= w && i < count, "QuantizedStore.retain: indices must be increasing and in range")
            while groupStarts[g + 1] <= i { g += 1 }
            newCounts[g] += 1
            if i != w {
                (keyCodes + w * rowBytes).update(from: keyCodes + i * rowBytes, count: rowBytes)
                (valueCodes + w * rowBytes).update(from: valueCodes + i * rowBytes, count: rowBytes)
                (valueParams + w * pv).update(from: valueParams + i * pv, count: pv)
            }
            w += 1
        }
        count = w
        var params: [Float] = [], counts: [Int32] = [], starts = [0]
        params.reserveCapacity(keyParams.count)
        for (gi, c) in newCounts.enumerated() where c > 0 {
            params += keyParams[(gi * 2 * d)..<((gi + 1) * 2 * d)]
            counts.append(c)
            starts.append(starts.last! + Int(c))
        }
        keyParams = params; groupCounts = counts; groupStarts = starts
    }

    public func removeAll() { count = 0; keyParams = []; groupCounts = []; groupStarts = [0] }
}
