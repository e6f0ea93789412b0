/// MiniCache storage on a `HeadStore`: store indices [0, merged.count) are merged tokens (norms
/// + a row of the pair's shared directions), the rest Float32 rows, as with KIVI's codes.
extension HeadStore {
    /// From now on this store may hold merged tokens whose directions live in `shared` (call while empty).
    func enableMerging(_ shared: MergedDirections) {
        precondition(count == 0 && quantized == nil, "enableMerging: the store must be empty and not quantized")
        merged = MergedSection(shared: shared)
    }

    /// Moves the Float32 tokens at store indices `moved` (increasing, >= compactCount) into the
    /// merged prefix, in that order, as rows `rows` of the shared directions with this layer's norms.
    /// Returns the mapping new index -> old index (what `CachePolicy.didRetain` receives).
    func absorbMerged(_ moved: [Int], rows: [Int32], keyNorms: [Float], valueNorms: [Float]) -> [Int] {
        guard let m = merged, !moved.isEmpty else { return Array(0..<count) }
        let first = m.count, d = headDim
        var isMoved = [Bool](repeating: false, count: count - first)
        for i in moved {
            precondition(i >= first && i < count, "absorbMerged: only Float32 tokens can be merged")
            isMoved[i - first] = true
        }
        let map = Array(0..<first) + moved + (first..<count).filter { !isMoved[$0 - first] }
        let oldPositions = Array(UnsafeBufferPointer(start: positions, count: count))
        for (i, o) in map.enumerated() { positions[i] = oldPositions[o] }
        // Float32 rows: slot r holds store index first + r; drop the moved slots, keep the order.
        var w = 0
        for r in 0..<(count - first) where !isMoved[r] {
            if r != w {
                (fpKeys + w * d).update(from: fpKeys + r * d, count: d)
                (fpValues + w * d).update(from: fpValues + r * d, count: d)
            }
            w += 1
        }
        for j in moved.indices { m.append(row: rows[j], keyNorm: keyNorms[j], valueNorm: valueNorms[j]) }
        if capacity > 256 && w * 4 <= capacity { resize(to: max(w * 2, 64)) }
        return map
    }
}
