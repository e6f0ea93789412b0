/// The attention geometry a cache (and every policy) is bound to.
public struct CacheShape: Equatable, Sendable, Codable {
    public var layers: Int        // L
    public var queryHeads: Int    // H
    public var kvHeads: Int       // Hkv
    public var headDim: Int       // d
    public var groupSize: Int { queryHeads / kvHeads }   // g = H / Hkv

    public init(layers: Int, queryHeads: Int, kvHeads: Int, headDim: Int) {
        precondition(kvHeads > 0 && queryHeads % kvHeads == 0, "query heads must be a multiple of KV heads")
        self.layers = layers; self.queryHeads = queryHeads; self.kvHeads = kvHeads; self.headDim = headDim
    }

    /// Bytes one token occupies in a full Float32 cache across all layers (K and V).
    public var fullBytesPerToken: Int { layers * kvHeads * headDim * 2 * MemoryLayout<Float>.stride }
}

/// Which pass of the model is running: the whole prompt at once, or one generated token.
public enum Phase: String, Sendable, Codable { case prefill, decode }

/// Memory and traffic figures read from the store, never computed from a formula.
public struct CacheStats: Equatable, Sendable, Codable {
    public var bytesStored = 0            // K/V payload currently held
    public var peakBytesStored = 0        // high-water mark of the payload: after every append, before retention
    public var metadataBytes = 0          // positions and policy metadata currently held
    public var bytesAllocated = 0         // capacity reserved by the stores
    public var lastStepBytesRead = 0      // K/V (+ metadata) bytes read by the last decode step
    public var decodeBytesRead = 0        // sum over decode steps (keys + values + metadata)
    public var decodeKeyBytesRead = 0     // of which keys (full rows and partial slices)
    public var decodeValueBytesRead = 0   // of which values
    public var decodeMetadataBytesRead = 0 // of which policy metadata (e.g. Quest page min/max)
    public var decodeSteps = 0
    /// K/V (+ policy) bytes prefill attention read: per query row and KV head, the rows its group
    /// attends (all visible rows when dense; the union of the group's lists under `selectRows`).
    public var prefillBytesRead = 0
    public var tokensSeen = 0             // tokens appended so far (what a full cache would hold)
    public init() {}

    /// Mean K/V bytes read per decode step.
    public var meanDecodeBytesRead: Double { decodeSteps == 0 ? 0 : Double(decodeBytesRead) / Double(decodeSteps) }
}
