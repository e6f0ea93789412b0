import Foundation
import KVCacheCore
import KVModel
import KVTensor

/// Keys, values and queries of a model on text, for the attention benchmarks: one dense prefill
/// of `context + steps` tokens, after which the first `context` tokens' K/V fill the benchmark
/// caches and the last `steps` tokens give each decode step its query, key and value rows (all
/// post-RoPE, as the cache sees them).
public struct CapturedKV {
    public let shape: CacheShape
    public let context: Int
    public let steps: Int
    /// Per layer: keys [context, Hkv*d], then values [context, Hkv*d] (`prefilledCaches`' layout).
    public let prefix: [Float]
    /// Decode inputs [steps*L, H*d] and [steps*L, Hkv*d], row s*L + l for step s, layer l.
    public let queries: [Float], keys: [Float], values: [Float]

    /// Runs the dense prefill of `ids` (count = context + steps) through `model`.
    public static func capture(model: LlamaModel, ids: [Int], context: Int) -> CapturedKV {
        let steps = ids.count - context
        precondition(steps >= 1 && context >= 1, "capture needs context >= 1 and at least one decode row")
        let recorder = KVCaptureRecorder(window: steps)
        let cache = model.makeCache(policy: recorder, initialCapacity: ids.count, kvDType: .f32)
        _ = model.forward(ids, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        let shape = cache.modelShape, L = shape.layers
        let width = shape.kvHeads * shape.headDim, qWidth = shape.queryHeads * shape.headDim
        var prefix: [Float] = [], q: [Float] = [], nk: [Float] = [], nv: [Float] = []
        prefix.reserveCapacity(L * context * width * 2)
        for l in 0..<L {   // keys [T, width], values [T, width]: the first `context` rows of each
            prefix += recorder.keys[l][0..<(context * width)]
            prefix += recorder.values[l][0..<(context * width)]
        }
        for s in 0..<steps {   // row s * L + l: step s's query [qWidth] and new key/value [width] of layer l
            for l in 0..<L {
                q += recorder.queries[l][(s * qWidth)..<((s + 1) * qWidth)]
                nk += recorder.keys[l][((context + s) * width)..<((context + s + 1) * width)]
                nv += recorder.values[l][((context + s) * width)..<((context + s + 1) * width)]
            }
        }
        return CapturedKV(shape: shape, context: context, steps: steps, prefix: prefix, queries: q, keys: nk, values: nv)
    }
}

/// A policy that keeps everything and copies, at the end of the prefill, each layer's keys and
/// values (token-major [T, Hkv*d]) and its last `window` query rows [window, H*d].
public final class KVCaptureRecorder: CachePolicy {
    public let window: Int
    public private(set) var keys: [[Float]] = [], values: [[Float]] = [], queries: [[Float]] = []

    public init(window: Int) { self.window = window }

    public var name: String { "kv_capture" }
    public var queryWindow: Int { window }

    public func bind(shape: CacheShape) {
        keys = Array(repeating: [], count: shape.layers); values = keys; queries = keys
    }

    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        guard head == 0, step.phase == .prefill, step.isStepEnd else { return nil }
        let d = step.shape.headDim, hkv = step.shape.kvHeads, T = step.stores[0].count
        precondition(step.recentCount == window, "capture: \(step.recentCount) query rows recorded, \(window) expected")
        var k = [Float](repeating: 0, count: T * hkv * d), v = k
        for (h, s) in step.stores.enumerated() {
            precondition(s.isOrdered && s.rows is Float32Rows, "capture reads a full Float32 cache")
            for t in 0..<T {
                for i in 0..<d {
                    k[t * hkv * d + h * d + i] = s.keys[t * d + i]
                    v[t * hkv * d + h * d + i] = s.values[t * d + i]
                }
            }
        }
        keys[step.layer] = k; values[step.layer] = v
        queries[step.layer] = Array(UnsafeBufferPointer(start: step.recentQueries, count: window * step.shape.queryHeads * d))
        return nil
    }
}

