/// Several policies applied together, e.g. SnapKV + Quest. Their storage layouts combine once,
/// when the stack is built (`StorageLayout.combine`: one quantizer, one basis...; it throws on a
/// conflict). The runtime hooks fold over the children in order:
/// - `sourceLayer`: the first child that redirects the layer wins;
/// - `select`: each child narrows the previous child's selection (selections compose);
/// - `selectRows`: the first child that selects rows in the phase;
/// - `retain`: retentions intersect (a token stays only if every child keeps it);
/// - `didAppend`, `observe`, `didRetain`, `bind`, `reset`: every child, in order; `runMetrics`: every child's.
///
/// Where it stops being sound: intersecting two evictions can keep fewer tokens than either
/// budget (the stack's measured bytes show it; nothing is multiplied from ratios); a scorer
/// after a selector observes only the tokens the selector let through.
public final class PolicyStack: CachePolicy {
    public let children: [CachePolicy]
    public let layout: StorageLayout
    public init(_ children: [CachePolicy]) throws {
        self.children = children
        layout = try StorageLayout.combine(children.map(\.layout))
    }

    public var name: String { children.map(\.name).joined(separator: " + ") }
    public var queryWindow: Int { children.map(\.queryWindow).max() ?? 0 }
    public func bind(shape: CacheShape) { children.forEach { $0.bind(shape: shape) } }
    public func sourceLayer(_ layer: Int) -> Int {
        for c in children { let s = c.sourceLayer(layer); if s != layer { return s } }
        return layer
    }
    public func didAppend(_ step: LayerStep) { children.forEach { $0.didAppend(step) } }
    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? {
        children.reduce(candidates) { $1.select(step, head: head, candidates: $0) }
    }
    /// Rows are narrowed by the first child that selects rows in the phase (its `select` siblings are
    /// not consulted then; configs reject stacks of two selectors where one selects rows).
    public func selectsRows(_ phase: Phase) -> Bool { children.contains { $0.selectsRows(phase) } }
    public func selectRows(_ step: LayerStep, head: Int, rows: Range<Int>, visible: [Int]) -> RowSelection? {
        children.first { $0.selectsRows(step.phase) }?.selectRows(step, head: head, rows: rows, visible: visible)
    }
    public func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {
        children.forEach { $0.observe(step, head: head, indices: indices, probs: probs, count: n) }
    }
    public func retain(_ step: LayerStep, head: Int) -> [Int]? {
        var kept: [Int]? = nil
        for c in children {
            guard let k = c.retain(step, head: head) else { continue }
            kept = kept.map { Self.intersect($0, k) } ?? k
        }
        return kept
    }
    public func didRetain(layer: Int, head: Int, kept: [Int]) {
        children.forEach { $0.didRetain(layer: layer, head: head, kept: kept) }
    }
    public var metadataBytes: Int { children.reduce(0) { $0 + $1.metadataBytes } }
    public func reset() { children.forEach { $0.reset() } }
    public var runMetrics: [(String, Double)] { children.flatMap(\.runMetrics) }

    /// Intersection of two increasing index lists.
    static func intersect(_ a: [Int], _ b: [Int]) -> [Int] {
        var out: [Int] = [], i = 0, j = 0
        while i < a.count && j < b.count {
            if a[i] == b[j] { out.append(a[i]); i += 1; j += 1 } else if a[i] < b[j] { i += 1 } else { j += 1 }
        }
        return out
    }
}
