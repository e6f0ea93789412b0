/// How the cache merges adjacent layers' K/V (MiniCache): from `startLayer` (nil = L/2) layers are
/// paired (s, s+1), (s+2, s+3), ...; per token and KV head the pair keeps one merged direction
/// (SLERP at `t`) and each layer its own norms; tokens whose layers diverge most stay unmerged.
public struct LayerMergeSpec: Hashable, Sendable {
    public var startLayer: Int?        // first layer of the first pair; nil = L / 2
    public var t: Float                // SLERP weight of the upper layer (0.6 in the paper)
    public var retainFraction: Double  // share of tokens kept unmerged (the most divergent), 0...1
    public init(startLayer: Int? = nil, t: Float = 0.6, retainFraction: Double = 0.05) {
        self.startLayer = startLayer; self.t = t; self.retainFraction = retainFraction
    }

    /// The pairs (lower, upper) of a model with `layers` layers.
    public func pairs(layers: Int) -> [(Int, Int)] {
        let s = min(max(startLayer ?? layers / 2, 0), layers)
        return stride(from: s, to: layers - 1, by: 2).map { ($0, $0 + 1) }
    }
}

/// The merged directions of one layer pair and KV head: unit key and value directions
/// [rows, d] shared by the pair's two stores (each store refers to rows by index and keeps its
/// own norms). A row lives while either store refers to it; emptied rows are compacted away at
/// once and both stores' references remapped, so the bytes held are the live rows.
public final class MergedDirections {
    public let headDim: Int
    public private(set) var rows = 0
    public private(set) var keyDirs: [Float] = []     // [rows, d] unit vectors (or 0)
    public private(set) var valueDirs: [Float] = []   // [rows, d]
    private var refs: [UInt8] = []                    // stores referring to each row (0...2)
    private var members: [Weak] = []                  // the two stores' sections

    private struct Weak { weak var section: MergedSection? }

    public init(headDim: Int) { self.headDim = headDim }

    /// Key and value direction payload held: 2 d Float32 per live row.
    public var payloadBytes: Int { rows * 2 * headDim * MemoryLayout<Float>.stride }
    public var allocatedBytes: Int { (keyDirs.capacity + valueDirs.capacity) * MemoryLayout<Float>.stride + refs.capacity }

    func attach(_ s: MergedSection) { members.append(Weak(section: s)) }

    /// Appends a row referred to by both stores of the pair; returns its index.
    func append(key: UnsafePointer<Float>, value: UnsafePointer<Float>) -> Int32 {
        keyDirs.append(contentsOf: UnsafeBufferPointer(start: key, count: headDim))
        valueDirs.append(contentsOf: UnsafeBufferPointer(start: value, count: headDim))
        refs.append(2)
        rows += 1
        return Int32(rows - 1)
    }

    func release(_ row: Int32) { refs[Int(row)] -= 1 }

    /// Drops rows no store refers to and renumbers the rest in both stores.
    func collect() {
        guard refs.contains(0) else { return }
        let d = headDim
        var newIndex = [Int32](repeating: -1, count: rows), w = 0
        for r in 0..<rows where refs[r] > 0 {
            if r != w {
                for c in 0..<d { keyDirs[w * d + c] = keyDirs[r * d + c]; valueDirs[w * d + c] = valueDirs[r * d + c] }
                refs[w] = refs[r]
            }
            newIndex[r] = Int32(w); w += 1
        }
        rows = w
        keyDirs.removeLast(keyDirs.count - w * d); valueDirs.removeLast(valueDirs.count - w * d); refs.removeLast(refs.count - w)
        for m in members { m.section?.renumber(newIndex) }
    }

    func removeAll() { rows = 0; keyDirs = []; valueDirs = []; refs = [] }
}

/// The merged tokens of one `HeadStore` (its store indices [0, count)): per token the row of the
/// pair's shared directions and this layer's key and value norms. Key i = keyNorm[i] * keyDir[row[i]].
public final class MergedSection {
    public let shared: MergedDirections
    public private(set) var row: [Int32] = []          // [count] rows of `shared`
    public private(set) var keyNorm: [Float] = []      // [count] ||k|| of this layer's key
    public private(set) var valueNorm: [Float] = []    // [count] ||v|| of this layer's value
    public var count: Int { row.count }

    init(shared: MergedDirections) { self.shared = shared; shared.attach(self) }

    /// This store's share of the pair's merged payload: its norms plus half the shared directions.
    public var payloadBytes: Int { count * 2 * MemoryLayout<Float>.stride + shared.payloadBytes / 2 }
    /// The row index per token.
    public var metadataBytes: Int { count * MemoryLayout<Int32>.stride }
    public var allocatedBytes: Int {
        (row.capacity + keyNorm.capacity + valueNorm.capacity) * 4 + shared.allocatedBytes / 2
    }

    func append(row r: Int32, keyNorm kn: Float, valueNorm vn: Float) { row.append(r); keyNorm.append(kn); valueNorm.append(vn) }

    /// Keeps the merged tokens at `indices` (increasing, < count); releases the others' rows.
    func retain(_ indices: [Int]) {
        var keep = [Bool](repeating: false, count: count)
        for i in indices { keep[i] = true }
        for (i, k) in keep.enumerated() where !k { shared.release(row[i]) }
        row = indices.map { row[$0] }; keyNorm = indices.map { keyNorm[$0] }; valueNorm = indices.map { valueNorm[$0] }
        shared.collect()
    }

    func renumber(_ newIndex: [Int32]) { for i in row.indices { row[i] = newIndex[Int(row[i])] } }

    /// Key of merged token i. out: [d]
    func key(_ i: Int, into out: UnsafeMutablePointer<Float>) { scaled(shared.keyDirs, keyNorm[i], i, out) }
    /// Value of merged token i. out: [d]
    func value(_ i: Int, into out: UnsafeMutablePointer<Float>) { scaled(shared.valueDirs, valueNorm[i], i, out) }

    private func scaled(_ dirs: [Float], _ norm: Float, _ i: Int, _ out: UnsafeMutablePointer<Float>) {
        let d = shared.headDim, r = Int(row[i])
        dirs.withUnsafeBufferPointer { b in for c in 0..<d { out[c] = norm * b[r * d + c] } }
    }

    func removeAll() {
        for r in row { shared.release(r) }
        row = []; keyNorm = []; valueNorm = []
        shared.collect()
    }
}
