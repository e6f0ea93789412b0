import Foundation
import KVTensor

/// Decode attention: one query row per layer, per KV head the policy's selection (or its per-query-head
/// row selection), the rows' own decode kernel, the policy's observation of the probabilities.
extension KVCache {
    func decodeAttention(_ step: LayerStep, scale: Float, output: UnsafeMutablePointer<Float>) {
        let d = shape.headDim, hkv = shape.kvHeads, g = shape.groupSize
        let heads = step.stores
        ensureScratch(g * (heads.map(\.count).max() ?? 0))
        let parallel = threads > 1 && hkv > 1 && heads[0].count >= 256
        // Selection runs inside each head's work, so heads select in parallel too; each head
        // meters into its own ReadMeter (merged below), as `CachePolicy.select` documents.
        let meters = parallel ? (0..<hkv).map { _ in ReadMeter() } : []
        let selections = UnsafeMutablePointer<[Int32]?>.allocate(capacity: hkv)
        selections.initialize(repeating: nil, count: hkv)
        let reads = UnsafeMutablePointer<RowsRead>.allocate(capacity: hkv)
        reads.initialize(repeating: RowsRead(rows: 0, keyBytes: 0, valueBytes: 0), count: hkv)
        // Per head: nanoseconds choosing, then attending (allocated only with a phase clock attached).
        let clock = phaseClock
        let nanos = clock.map { _ in UnsafeMutablePointer<UInt64>.allocate(capacity: 2 * hkv) }
        nanos?.initialize(repeating: 0, count: 2 * hkv)
        defer { selections.deinitialize(count: hkv); selections.deallocate(); reads.deallocate(); nanos?.deallocate() }
        let rowSelect = policy.selectsRows(.decode)
        let work = { (h: Int) in
            let t0 = nanos == nil ? 0 : DecodePhaseClock.now()
            var t1: UInt64 = 0
            defer { if let nanos { let t2 = DecodePhaseClock.now(); nanos[h] = t1 - t0; nanos[hkv + h] = t2 - t1 } }
            let st = parallel ? step.with(meter: meters[h]) : step
            let rowSel = rowSelect ? self.policy.selectRows(st, head: h, rows: 0..<1, visible: [heads[h].count]) : nil
            if nanos != nil { t1 = DecodePhaseClock.now() }
            if let rs = rowSel, rs.perQueryHead {
                // Each query head attends its own list; observers see the union, zeros where a head did not select.
                (selections[h], reads[h]) = Self.attendPerQueryHead(rs.lists, q: step.queries + h * g * d, groups: g,
                                                                    store: heads[h], scale: scale, probs: self.scratch[h],
                                                                    out: output + h * g * d)
                return
            }
            let sel = rowSelect ? (rowSel?.lists.first ?? nil) : self.policy.select(st, head: h, candidates: nil)
            if let sel {
                precondition(sel.allSatisfy { $0 >= 0 && Int($0) < heads[h].count }, "\(self.policy.name): selected a token not in the store")
            }
            if nanos != nil { t1 = DecodePhaseClock.now() }
            selections[h] = sel
            let run = { (idx: UnsafeBufferPointer<Int32>?) in
                reads[h] = heads[h].rows.decode(q: step.queries + h * g * d, groups: g, indices: idx, scale: scale,
                                                probs: self.scratch[h], out: output + h * g * d)
            }
            if let sel { sel.withUnsafeBufferPointer { run($0) } } else { run(nil) }
        }
        if parallel {
            // The decoder's worker pool (its threads are already spinning between a step's
            // matrix-vector products; GCD threads would compete with them for the cores).
            WorkerPool.shared.run(hkv, work)
            for m in meters { meter.keyBytes += m.keyBytes; meter.valueBytes += m.valueBytes; meter.metadataBytes += m.metadataBytes }
        } else {
            for h in 0..<hkv { work(h) }
        }
        if let clock, let nanos { clock.add(choose: nanos, attend: nanos + hkv, heads: hkv) }
        for h in 0..<hkv {
            meter.keyBytes += reads[h].keyBytes          // in the rows' format: Float32 rows, codes, merged rows
            meter.valueBytes += reads[h].valueBytes
            policy.observe(step, head: h, indices: selections[h], probs: scratch[h], count: reads[h].rows)
            probe?.decodeProbabilities(layer: step.layer, head: h, store: heads[h], indices: selections[h],
                                       probs: scratch[h], count: reads[h].rows)
        }
    }
}

extension LayerStep {
    /// The same step metering into `m` (per-head meters while heads select in parallel).
    func with(meter m: ReadMeter) -> LayerStep {
        var step = LayerStep(layer: layer, phase: phase, isStepEnd: isStepEnd, compress: compress, rows: rows, queries: queries,
                             positions: positions, recentQueries: recentQueries, recentCount: recentCount, stores: stores,
                             shape: shape, tokensSeen: tokensSeen, promptLength: promptLength, pendingRows: pendingRows, prefillEnd: prefillEnd, meter: m)
        step.tokens = tokens
        return step
    }
}
