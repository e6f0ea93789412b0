// Support file, not a policy: what Quest (arXiv 2406.10774, page key bounds) and Loki (arXiv
// 2406.02542, low-rank key rows) keep beside the stores, derived from the stored keys.
import KVCacheCore

/// Data a policy derives from the keys of one store (Quest's page bounds, Loki's low-rank rows),
/// kept in step with it: tokens appended since the last `sync` are folded in, `remap` follows the
/// store's retentions. The data lives in `rows`, `width` floats per entry.
protocol KeyMirror: AnyObject {
    /// The store mirrored (weak: the cache owns its stores).
    var store: HeadStore? { get set }
    /// Store tokens folded in.
    var covered: Int { get set }
    var rows: MirrorRows { get }
    /// Folds in the keys [tokens.count, d] of the store's tokens `tokens`.
    func fold(_ keys: UnsafePointer<Float>, tokens: Range<Int>, store: HeadStore)
    /// The store now holds at index i the token that was at kept[i].
    func remap(kept: [Int])
    /// Bytes held (counted as the policy's metadata).
    var bytes: Int { get }
}

extension KeyMirror {
    /// Mirrors `s` from now on (from scratch if it mirrored another store).
    func attach(_ s: HeadStore) { if store !== s { store = s; covered = 0 } }
    func clear() { covered = 0 }

    /// Folds in the tokens appended since the last sync (all of them if the store shrank unseen).
    func sync() {
        guard let st = store else { return }
        if covered > st.count { covered = 0 }
        guard covered < st.count else { return }
        let new = covered..<st.count
        st.rows.withFloat32(new) { keys, _ in fold(keys, tokens: new, store: st) }
        covered = st.count
    }
}

/// A growable buffer of entries of `width` floats: [capacity, width].
final class MirrorRows {
    let width: Int
    private(set) var base: UnsafeMutablePointer<Float>
    private(set) var capacity: Int            // entries

    init(width: Int, capacity: Int) {
        self.width = width; self.capacity = capacity
        base = .allocate(capacity: capacity * width)
    }
    deinit { base.deallocate() }

    /// Room for `n` entries (geometric growth), the first `keeping` entries kept.
    func reserve(_ n: Int, keeping: Int) {
        guard n > capacity else { return }
        let newCap = max(n, capacity * 2)
        let r = UnsafeMutablePointer<Float>.allocate(capacity: newCap * width)
        r.update(from: base, count: keeping * width)
        base.deallocate()
        base = r; capacity = newCap
    }

    /// Takes `other`'s entries (and gives it these).
    func replace(with other: MirrorRows) {
        precondition(other.width == width)
        swap(&base, &other.base); swap(&capacity, &other.capacity)
    }

    /// Entry i.
    @inline(__always) subscript(_ i: Int) -> UnsafeMutablePointer<Float> { base + i * width }
}

/// The mirrors of every (layer, KV head). Under cross-layer sharing a layer reads another layer's
/// store: the mirror follows the store object, not the layer.
struct KeyMirrors<M: KeyMirror> {
    private(set) var all: [[M]] = []              // [layer][kvHead]

    init() {}
    init(layers: Int, kvHeads: Int, _ make: (_ layer: Int) -> M) {
        all = (0..<layers).map { l in (0..<kvHeads).map { _ in make(l) } }
    }

    /// Brings the step's layer's mirrors up to date with their stores.
    func didAppend(_ step: LayerStep) {
        for (h, st) in step.stores.enumerated() { let m = all[step.layer][h]; m.attach(st); m.sync() }
    }

    func didRetain(layer: Int, head: Int, kept: [Int]) { all[layer][head].remap(kept: kept) }
    func reset() { for l in all { for m in l { m.clear() } } }
    var bytes: Int { all.reduce(0) { $0 + $1.reduce(0) { $0 + $1.bytes } } }

    /// The mirror of the store `head` of this step reads, synced.
    func mirror(_ step: LayerStep, head: Int) -> M {
        let st = step.stores[head]
        let own = all[step.layer][head]
        var m = own.store === st ? own : nil
        if m == nil { for l in all.indices where all[l][head].store === st { m = all[l][head]; break } }
        if m == nil { own.attach(st); m = own }
        m!.sync()
        return m!
    }

    subscript(layer: Int, head: Int) -> M { all[layer][head] }
}
