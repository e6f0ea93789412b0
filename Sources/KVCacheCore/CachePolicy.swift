import KVTensor

/// What a policy sees of one layer's step: the new tokens' queries and the layer's stores.
/// Pointers are valid only during the call that receives the step.
public struct LayerStep {
    public let layer: Int
    public let phase: Phase
    /// True on the last chunk of a prefill and on every decode step: when retention runs.
    public let isStepEnd: Bool
    /// Whether compression applies to these tokens (false while a task's question is fed).
    public let compress: Bool
    public let rows: Int                          // new tokens this call
    public let queries: UnsafePointer<Float>      // [rows, H*d] post-RoPE
    public let positions: [Int]                   // [rows] absolute positions
    /// [rows] token ids of the new tokens, when the feeder gave them (the model does, and a replayed
    /// prefill carries the recorded ids); nil otherwise. Policies that type tokens (NAtS) read them.
    public var tokens: [Int]? = nil
    /// The last `recentCount` query rows of this layer, across prefill chunks (see `queryWindow`).
    public let recentQueries: UnsafePointer<Float>  // [recentCount, H*d]
    public let recentCount: Int
    public let stores: [HeadStore]                // [Hkv] this layer's storage
    public let shape: CacheShape
    public let tokensSeen: Int                    // tokens fed to the model so far, these included
    public let promptLength: Int                  // tokens seen when the last compressed prefill ended
    /// Rows of the same forward call still to come after this chunk (0 on the last chunk and in decode):
    /// `tokens held + pendingRows` is the key length the whole forward ends with.
    public let pendingRows: Int
    public let prefillEnd: Int                    // tokens seen when the last prefill ended, compressed or not
    /// Bytes a policy reads outside the attention kernel (page summaries, low-rank key slices).
    public let meter: ReadMeter
    public var scale: Float { 1 / Float(shape.headDim).squareRoot() }
}

/// Bytes read during one decode step, by kind. Policies add what their selection reads.
public final class ReadMeter {
    public var keyBytes = 0
    public var valueBytes = 0
    public var metadataBytes = 0
    public init() {}
    public var total: Int { keyBytes + valueBytes + metadataBytes }
}

/// A KV-cache policy. Asked at a few points; implements only what it needs (the protocol
/// extension gives do-nothing defaults). Policies never see the model, only shapes, queries,
/// keys, values and attention weights through the cache.
public protocol CachePolicy: AnyObject {
    /// Short identifier with parameters, e.g. "snapkv(w=64,k=5)".
    var name: String { get }
    /// Number of most recent query rows per layer the policy needs (SnapKV's window). Default 0.
    var queryWindow: Int { get }
    /// How the cache stores this policy's tokens (codes, merged layers, pooled heads, a key basis,
    /// shifted positions) and what the policy keeps beside the stores. Default: Float32 rows, nothing kept.
    var layout: StorageLayout { get }
    /// Called once before use; allocate per-layer state.
    func bind(shape: CacheShape)
    /// Layer whose store `layer` reads and writes (cross-layer sharing). Default: itself.
    func sourceLayer(_ layer: Int) -> Int
    /// New tokens were appended to the layer's stores (keep metadata: page min/max, rotations...).
    func didAppend(_ step: LayerStep)
    /// Decode: the store indices KV head `head` attends, narrowed from `candidates` (nil = all).
    /// May be called concurrently for the different KV heads of one layer step (each call gets
    /// its own `step.meter`): touch only state of `head`, never another head's or shared state.
    func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]?
    /// Whether the policy narrows, in `phase`, the keys each query row (per query head) reads through
    /// `selectRows` instead of the default path (prefill: exact causal attention; decode: `select`).
    /// Default false.
    func selectsRows(_ phase: Phase) -> Bool
    /// For the query rows `rows` of this step (indices into its rows) of the g query heads of KV head
    /// `head`: the store indices each row reads; `visible[r]` is the number of store tokens row r may
    /// see (causal; for every row of the step). nil = every visible token. The cache then attends
    /// exactly over each list (Loki's reference protocol). Called only when `selectsRows(step.phase)`;
    /// may run concurrently for different KV heads (touch only `head`'s state, as `select`).
    func selectRows(_ step: LayerStep, head: Int, rows: Range<Int>, visible: [Int]) -> RowSelection?
    /// Decode: attention probabilities [g, n] over the attended indices (nil = all n tokens).
    func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int)
    /// After the layer attended, at a step end: the store indices (increasing) to keep; nil = all.
    /// The store may hold tokens out of position order after decode-time evictions (see
    /// `HeadStore.isOrdered`): score recency by `store.position(i)`, not by index.
    func retain(_ step: LayerStep, head: Int) -> [Int]?
    /// The store changed: new index i now holds the token that was at old index kept[i]
    /// (evictions, slot reuse, reordering). Move per-token metadata the same way.
    func didRetain(layer: Int, head: Int, kept: [Int])
    /// Bytes of policy metadata currently held (scores, page summaries...), counted as stored.
    var metadataBytes: Int { get }
    /// Forget all state (new sequence).
    func reset()
    /// Figures the policy measured over the sequence (name, value), recorded per sample and averaged
    /// per run beside the cache's own (e.g. QAdA's share of full-cache decisions). Default none.
    var runMetrics: [(String, Double)] { get }
}

extension CachePolicy {
    public var queryWindow: Int { 0 }
    public var layout: StorageLayout { StorageLayout() }
    public func bind(shape: CacheShape) {}
    public func sourceLayer(_ layer: Int) -> Int { layer }
    public func didAppend(_ step: LayerStep) {}
    public func select(_ step: LayerStep, head: Int, candidates: [Int32]?) -> [Int32]? { candidates }
    public func selectsRows(_ phase: Phase) -> Bool { false }
    public func selectRows(_ step: LayerStep, head: Int, rows: Range<Int>, visible: [Int]) -> RowSelection? { nil }
    public func observe(_ step: LayerStep, head: Int, indices: [Int32]?, probs: UnsafePointer<Float>, count n: Int) {}
    public func retain(_ step: LayerStep, head: Int) -> [Int]? { nil }
    public func didRetain(layer: Int, head: Int, kept: [Int]) {}
    public var metadataBytes: Int { 0 }
    public func reset() {}
    public var runMetrics: [(String, Double)] { [] }

    /// The basis the layout stores `head`'s keys of `layer` in (nil = the identity).
    public func keyBasis(layer: Int, head: Int) -> [Float]? { layout.keyBasis?(layer, head) }
}

/// What `selectRows` returns for a block of query rows of one KV head's group.
public struct RowSelection {
    /// One list per query head of the group (g per row) or one the group shares (1 per row).
    public var perQueryHead: Bool
    /// lists[m * rows + r]: increasing store indices row r (of the block) of query head m reads, each
    /// below the row's visible count; nil = every visible token.
    public var lists: [[Int32]?]
    public init(perQueryHead: Bool, lists: [[Int32]?]) { self.perQueryHead = perQueryHead; self.lists = lists }
}

/// The full cache: keeps and reads everything. The reference every policy is compared with.
public final class FullCachePolicy: CachePolicy {
    public init() {}
    public var name: String { "full" }
}
