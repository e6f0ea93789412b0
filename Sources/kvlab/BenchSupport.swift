import KVCache

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
