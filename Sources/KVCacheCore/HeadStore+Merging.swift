/// MiniCache storage on a `HeadStore` whose rows are `MergedRows`.
extension HeadStore {
    /// The merged format's rows (nil for other formats).
    var mergedRows: MergedRows? { rows as? MergedRows }

    /// Moves the Float32 tokens at store indices `moved` (increasing, >= the merged count) into the
    /// merged prefix, in that order, as rows `rows` of the shared directions with this layer's norms.
    /// Returns the mapping new index -> old index (what `CachePolicy.didRetain` receives).
    func absorbMerged(_ moved: [Int], rows dirRows: [Int32], keyNorms: [Float], valueNorms: [Float]) -> [Int] {
        guard let m = mergedRows, !moved.isEmpty else { return Array(0..<count) }
        let first = m.merged.count, n = count
        var isMoved = [Bool](repeating: false, count: n - first)
        for i in moved {
            precondition(i >= first && i < n, "absorbMerged: only Float32 tokens can be merged")
            isMoved[i - first] = true
        }
        let map = Array(0..<first) + moved + (first..<n).filter { !isMoved[$0 - first] }
        let oldPositions = Array(UnsafeBufferPointer(start: positions, count: n))
        m.absorb(moved, rows: dirRows, keyNorms: keyNorms, valueNorms: valueNorms)
        for (i, o) in map.enumerated() { positions[i] = oldPositions[o] }
        return map
    }
}
