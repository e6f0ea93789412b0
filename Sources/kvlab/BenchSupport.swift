import KVCacheCore

/// One decode attention step of every layer through `cache`, with step `s`'s rows of pre-drawn
/// random queries [steps*layers, H*d] and keys/values [steps*layers, Hkv*d]; returns the seconds
/// the attention took (`endStep` is called after, outside the timing).
func timeDecodeAttentionStep(_ cache: KVCache, step s: Int, layers: Int, position: Int,
                             queries q: [Float], keys nk: [Float], values nv: [Float], output out: inout [Float]) -> Double {
    let qWidth = cache.modelShape.queryHeads * cache.modelShape.headDim
    let kvWidth = cache.modelShape.kvHeads * cache.modelShape.headDim
    let t = q.withUnsafeBufferPointer { qb in nk.withUnsafeBufferPointer { kb in nv.withUnsafeBufferPointer { vb in
        out.withUnsafeMutableBufferPointer { ob in
            clock {
                for l in 0..<layers {
                    let o = s * layers + l
                    cache.attention(layer: l, phase: .decode, rows: 1, queries: qb.baseAddress! + o * qWidth,
                                    keys: kb.baseAddress! + o * kvWidth, values: vb.baseAddress! + o * kvWidth,
                                    positions: [position], output: ob.baseAddress!)
                }
            }
        }
    } } }
    cache.endStep(phase: .decode)
    return t
}

/// The middle sample (the upper one of an even count): what every benchmark reports.
func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

/// `steps` decode attention steps over every cache in turn (interleaved, so load changes hit all
/// alike); step 0 warms up and is not recorded. `beforeStep(s)` runs before each step's caches.
/// Returns the seconds of each recorded step per cache and the bytes each cache's last step read.
func timeDecodeSteps(_ caches: [KVCache], steps: Int, layers: Int, firstPosition: Int,
                     queries q: [Float], keys nk: [Float], values nv: [Float],
                     beforeStep: (Int) -> Void = { _ in }) -> (times: [[Double]], bytes: [Int]) {
    var out = [Float](repeating: 0, count: (caches.first?.modelShape.queryHeads ?? 0) * (caches.first?.modelShape.headDim ?? 0))
    var times = Array(repeating: [Double](), count: caches.count)
    var bytes = Array(repeating: 0, count: caches.count)
    for s in 0..<steps {
        beforeStep(s)
        for (i, cache) in caches.enumerated() {
            let t = timeDecodeAttentionStep(cache, step: s, layers: layers, position: firstPosition + s,
                                            queries: q, keys: nk, values: nv, output: &out)
            if s > 0 { times[i].append(t) }
            bytes[i] = cache.stats.lastStepBytesRead
        }
    }
    return (times, bytes)
}

/// One cache per policy, each holding the same `context` tokens per (layer, KV head) from `draw()`
/// (layer l's keys [T, Hkv*d], then its values, drawn in that order), stored at the step end as a
/// prefill would leave them (KIVI quantizes its older tokens; other stores are unchanged). `dtypes`:
/// each cache's `kv_dtype` (default Float32).
func prefilledCaches(_ policies: [CachePolicy], shape: CacheShape, context T: Int, reserve: Int, threads: Int,
                     dtypes: [KVDType]? = nil, draw: () -> Float) -> [KVCache] {
    let width = shape.kvHeads * shape.headDim, d = shape.headDim
    var kv = [Float](repeating: 0, count: shape.layers * T * width * 2)
    for i in kv.indices { kv[i] = draw() }
    return policies.enumerated().map { i, p in
        let c = KVCache(shape: shape, policy: p, initialCapacity: T + reserve, kvDType: dtypes?[i] ?? .f32)
        c.threads = threads
        kv.withUnsafeBufferPointer { b in
            for l in 0..<shape.layers {
                let base = b.baseAddress! + l * T * width * 2
                for h in 0..<shape.kvHeads {
                    let st = c.stores[l][h]
                    for t in 0..<T { st.append(key: base + t * width + h * d, value: base + T * width + t * width + h * d, position: t) }
                    st.rows.endStep()
                }
            }
        }
        return c
    }
}

/// Decode inputs for `steps` steps of every layer from `draw()`: queries [steps*L, H*d], then new
/// keys and values [steps*L, Hkv*d] drawn alternately.
func decodeInputs(shape: CacheShape, steps: Int, draw: () -> Float) -> (queries: [Float], keys: [Float], values: [Float]) {
    var q = [Float](repeating: 0, count: steps * shape.layers * shape.queryHeads * shape.headDim)
    var nk = [Float](repeating: 0, count: steps * shape.layers * shape.kvHeads * shape.headDim), nv = nk
    for i in q.indices { q[i] = draw() }
    for i in nk.indices { nk[i] = draw(); nv[i] = draw() }
    return (q, nk, nv)
}
