import Yams

/// Expansion of list-valued parameters: every list is a sweep axis, the entry's points are the
/// product of its axes, except keys named together in `zip: [a, b]`, which move in lockstep
/// (their lists must have equal lengths).
enum Sweep {
    /// Most points one entry (or one stack) may expand to; a product beyond it is an error before
    /// anything is built (ten keys of 100 values would be 10^20 points).
    static let maxPoints = 100_000

    /// One mapping of key -> scalar field per point, in YAML key order (last key varies fastest).
    static func expand(_ f: Field, allowed: [String], fixed: Set<String>) throws -> [[String: Field]] {
        let entries = try f.mapping(allowed: allowed + ["zip"])
        guard case .mapping(let m) = f.node else { return [] }
        let order = m.compactMap { $0.key.string }.filter { $0 != "zip" }
        var zipped: [String] = []
        if let z = entries["zip"] {
            zipped = try z.list().map { try $0.string() }
            for k in zipped where entries[k] == nil || fixed.contains(k) {
                throw z.error("'\(k)' is not a sweepable key of this entry")
            }
            let lengths = Set(zipped.map { entries[$0]!.values().count })
            if lengths.count > 1 { throw z.error("zipped keys must have lists of equal length, got lengths \(lengths.sorted())") }
            if lengths == [0] { throw z.error("zipped keys \(zipped.joined(separator: ", ")) have empty lists: an empty list sweeps nothing") }
        }
        // Axes: each free key, plus one axis for the zip group (at its first key's place).
        var axes: [[[String: Field]]] = []
        var zipPlaced = false
        for k in order {
            let field = entries[k]!
            if fixed.contains(k) { axes.append([[k: field]]); continue }
            if zipped.contains(k) {
                if zipPlaced { continue }
                zipPlaced = true
                let n = field.values().count
                axes.append((0..<n).map { i in
                    Dictionary(uniqueKeysWithValues: zipped.map { ($0, entries[$0]!.values()[i]) })
                })
                continue
            }
            let vals = field.values()
            if vals.isEmpty { throw field.error("an empty list sweeps nothing") }
            axes.append(vals.map { [k: $0] })
        }
        var total = 1
        for axis in axes {
            let (product, overflow) = total.multipliedReportingOverflow(by: axis.count)
            if overflow || product > maxPoints {
                throw f.error("this entry sweeps more than \(maxPoints) points (the product of its lists); split it or sweep fewer values")
            }
            total = product
        }
        var points: [[String: Field]] = [[:]]
        for axis in axes {
            points = points.flatMap { p in axis.map { p.merging($0) { a, _ in a } } }
        }
        return points
    }
}
