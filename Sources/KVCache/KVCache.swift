import Foundation
import KVTensor

/// The KV cache the decoder talks to. It stores post-RoPE keys and values per layer and
/// KV head, runs attention over what it holds, and measures its own bytes.
///
/// The model hands each layer's new keys/values/queries to `attention(...)`; the cache
/// appends, attends and (in later policies) selects or evicts. The model never knows
/// which policy runs, and policies never see the model.
public final class KVCache {
    public let shape: CacheShape
    /// stores[layer][kvHead]
    public private(set) var stores: [[HeadStore]]
    public private(set) var stats = CacheStats()
    /// Threads used for per-head decode attention.
    public var threads: Int = ProcessInfo.processInfo.activeProcessorCount

    private var stepBytesRead = 0
    private var scratch: [UnsafeMutablePointer<Float>] = []   // per KV head: probabilities [g, n]
    private var scratchCapacity = 0

    public init(shape: CacheShape, initialCapacity: Int = 64) {
        self.shape = shape
        stores = (0..<shape.layers).map { _ in
            (0..<shape.kvHeads).map { _ in HeadStore(headDim: shape.headDim, initialCapacity: initialCapacity) }
        }
    }

    deinit { scratch.forEach { $0.deallocate() } }

    /// Number of tokens layer `layer`, KV head `head` holds.
    public func count(layer: Int, head: Int = 0) -> Int { stores[layer][head].count }

    /// Appends `rows` new tokens to `layer` and computes their attention output.
    /// - queries:   [rows, H * d]   post-RoPE
    /// - keys:      [rows, Hkv * d] post-RoPE
    /// - values:    [rows, Hkv * d]
    /// - positions: [rows]          absolute positions of the new tokens
    /// - output:    [rows, H * d]
    public func attention(layer: Int, phase: Phase, rows: Int,
                          queries: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>,
                          positions: [Int], output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, hkv = shape.kvHeads, g = shape.groupSize, hq = shape.queryHeads
        let scale = 1 / Float(d).squareRoot()
        let heads = stores[layer]
        for h in 0..<hkv {
            let st = heads[h]
            st.reserve(st.count + rows)
            for r in 0..<rows {
                st.append(key: keys + (r * hkv + h) * d, value: values + (r * hkv + h) * d, position: positions[r])
            }
        }
        if layer == 0 { stats.tokensSeen += rows }
        if phase == .decode && rows == 1 {
            ensureScratch(g * (heads.map(\.count).max() ?? 0))
            let readRows = UnsafeMutablePointer<Int>.allocate(capacity: hkv)
            defer { readRows.deallocate() }
            let work = { (h: Int) in
                readRows[h] = Attention.decode(q: queries + h * g * d, groups: g, store: heads[h], indices: nil,
                                               scale: scale, probs: self.scratch[h], out: output + h * g * d)
            }
            if threads > 1 && hkv > 1 && heads[0].count >= 256 {
                DispatchQueue.concurrentPerform(iterations: hkv, execute: work)
            } else {
                for h in 0..<hkv { work(h) }
            }
            for h in 0..<hkv { stepBytesRead += readRows[h] * d * MemoryLayout<Float>.stride * 2 }
        } else {
            for qh in 0..<hq {
                let st = heads[qh / g]
                Attention.causal(q: queries + qh * d, ldq: hq * d, rows: rows, store: st,
                                 visibleBase: st.count - rows, scale: scale, out: output + qh * d, ldo: hq * d)
            }
        }
    }

    /// Closes a forward step (all layers): updates the measured figures.
    public func endStep(phase: Phase) {
        var stored = 0, meta = 0, alloc = 0
        for layer in stores { for s in layer { stored += s.payloadBytes; meta += s.metadataBytes; alloc += s.allocatedBytes } }
        stats.bytesStored = stored
        stats.metadataBytes = meta
        stats.bytesAllocated = alloc
        stats.peakBytesStored = max(stats.peakBytesStored, stored)
        if phase == .decode {
            stats.lastStepBytesRead = stepBytesRead
            stats.decodeBytesRead += stepBytesRead
            stats.decodeSteps += 1
        }
        stepBytesRead = 0
    }

    /// Drops every token and resets the figures.
    public func reset() {
        for layer in stores { for s in layer { s.removeAll() } }
        stats = CacheStats()
    }

    private func ensureScratch(_ n: Int) {
        if scratch.count == shape.kvHeads && n <= scratchCapacity { return }
        scratch.forEach { $0.deallocate() }
        scratchCapacity = max(n, scratchCapacity * 2, 1024)
        scratch = (0..<shape.kvHeads).map { _ in .allocate(capacity: scratchCapacity) }
    }
}
