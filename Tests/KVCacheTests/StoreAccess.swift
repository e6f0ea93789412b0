import KVCacheCore

/// What tests read of a store's format: KIVI's codes, MiniCache's merged section, their count.
extension HeadStore {
    var quantized: QuantizedStore? { (rows as? QuantizedRows)?.codes }
    var quantizedCount: Int { quantized?.count ?? 0 }
    var merged: MergedSection? { (rows as? MergedRows)?.merged }
    /// Tokens held in a compact prefix (codes or merged): store indices [0, compactCount).
    var compactCount: Int { quantizedCount + (merged?.count ?? 0) }
    /// KIVI's step-end housekeeping: full groups of older tokens become codes.
    func quantizeResidual() { rows.endStep() }

    /// A Float32 store with every token of this one, in order, restored from its format.
    func dequantizedCopy() -> HeadStore {
        let c = HeadStore(headDim: headDim, initialCapacity: count)
        rows.withFloat32(0..<count) { k, v in
            for i in 0..<count { c.append(key: k + i * headDim, value: v + i * headDim, position: position(i)) }
        }
        return c
    }
}
