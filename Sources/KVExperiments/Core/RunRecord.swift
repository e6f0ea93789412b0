import Foundation

/// Everything one finished grid point produced: what the results file stores under /runs/<index>.
public struct RunRecord: Sendable, Equatable {
    /// Position in the expanded grid (the group name is this, zero-padded to 6 digits).
    public var index: Int
    /// Canonical identity of the grid point (model, task, policy, seeds) as a JSON string:
    /// resume skips a run whose key is already in the file; compare matches runs by it.
    public var key: String
    public var modelID: String
    public var taskKind: String
    public var context: Int
    public var seed: Int
    public var policyKind: String
    public var policyFamily: String
    public var policyLabel: String
    public var policyParams: String        // JSON object
    /// "ok", or "error: <message>" for a point that failed (recorded, not retried silently).
    public var status: String
    /// Text facts of the run in a fixed order (budget_kind, setup, suffix, text_source...): string
    /// attributes of the run group and string columns of the summary.
    public var info: [Info] = []
    /// Summary metrics in a fixed order (score, kv_bytes_stored_peak, ...): one summary row.
    public var scalars: [Metric]
    /// Per-sample metric arrays: name -> [samples].
    public var perSample: [Series]
    /// Per-layer x head statistics: name -> values [layers, heads] row-major.
    public var perLayerHead: [Grid]
    /// Optional retention maps: kept original positions per layer and KV head, -1 padded:
    /// [samples, layers, kvHeads, maxKept] row-major.
    public var retention: Retention?
    /// Per-sample texts: name -> [samples] (`generated`: the decoded output each sample was scored on).
    public var texts: [TextSeries] = []

    /// Equality is of the stored content: NaN equals NaN (a run without a budget, an interval of one sample).
    public struct Metric: Sendable, Equatable { public var name: String; public var value: Double
        public init(_ name: String, _ value: Double) { self.name = name; self.value = value }
        public static func == (a: Metric, b: Metric) -> Bool { a.name == b.name && sameValue(a.value, b.value) } }
    public struct Info: Sendable, Equatable { public var name: String; public var value: String
        public init(_ name: String, _ value: String) { self.name = name; self.value = value } }
    public struct Series: Sendable, Equatable { public var name: String; public var values: [Double]
        public init(_ name: String, _ values: [Double]) { self.name = name; self.values = values }
        public static func == (a: Series, b: Series) -> Bool {
            a.name == b.name && a.values.count == b.values.count && zip(a.values, b.values).allSatisfy(sameValue)
        } }
    public struct TextSeries: Sendable, Equatable { public var name: String; public var values: [String]
        public init(_ name: String, _ values: [String]) { self.name = name; self.values = values } }
    public struct Grid: Sendable, Equatable {
        public var name: String; public var values: [Float]; public var layers: Int; public var heads: Int
        public init(_ name: String, _ values: [Float], layers: Int, heads: Int) {
            self.name = name; self.values = values; self.layers = layers; self.heads = heads
        }
    }
    public struct Retention: Sendable, Equatable {
        public var positions: [Int32]; public var shape: [Int]
        public init(positions: [Int32], shape: [Int]) { self.positions = positions; self.shape = shape }
    }

    public init(index: Int, key: String, modelID: String, taskKind: String, context: Int, seed: Int,
                policyKind: String, policyFamily: String, policyLabel: String, policyParams: String,
                status: String = "ok", scalars: [Metric] = [], perSample: [Series] = [],
                perLayerHead: [Grid] = [], retention: Retention? = nil) {
        self.index = index; self.key = key; self.modelID = modelID; self.taskKind = taskKind
        self.context = context; self.seed = seed; self.policyKind = policyKind; self.policyFamily = policyFamily
        self.policyLabel = policyLabel; self.policyParams = policyParams; self.status = status
        self.scalars = scalars; self.perSample = perSample; self.perLayerHead = perLayerHead; self.retention = retention
    }

    /// A summary metric by name.
    public func scalar(_ name: String) -> Double? { scalars.first { $0.name == name }?.value }
    /// A text fact by name.
    public func infoValue(_ name: String) -> String? { info.first { $0.name == name }?.value }
}

/// Equal values, or both NaN.
func sameValue(_ a: Double, _ b: Double) -> Bool { a == b || (a.isNaN && b.isNaN) }

/// The identity of a model in a results file (/model/<id>).
public struct ModelRecord: Sendable, Equatable {
    public var id: String
    public var source: String              // folder path or synthetic spec
    public var configJSON: String          // config.json text (or the synthetic config as JSON)
    public var parameterCount: Int
    public var kvBytesPerToken: Int        // full fp32 cache
    public var configHash: String          // SHA-256-like hex of configJSON (stable across machines)
    public var weightsHash: String         // hash of the weight files (checkpoint) or "seed:<n>"
    public init(id: String, source: String, configJSON: String, parameterCount: Int, kvBytesPerToken: Int,
                configHash: String, weightsHash: String) {
        self.id = id; self.source = source; self.configJSON = configJSON; self.parameterCount = parameterCount
        self.kvBytesPerToken = kvBytesPerToken; self.configHash = configHash; self.weightsHash = weightsHash
    }
}

/// Provenance written once per results file (root attributes).
public struct Provenance: Sendable, Equatable {
    public var kvlabVersion: String
    public var gitCommit: String
    public var created: String             // ISO 8601 UTC
    public var host: String
    public var configText: String          // the YAML as given
    public var configHash: String          // identity of the grid (refuse a different config without --force)
    public var schemaVersion: Int
    public var shard: String               // "i/N" or "" when unsharded
    public init(kvlabVersion: String, gitCommit: String, created: String, host: String, configText: String,
                configHash: String, schemaVersion: Int, shard: String = "") {
        self.kvlabVersion = kvlabVersion; self.gitCommit = gitCommit; self.created = created; self.host = host
        self.configText = configText; self.configHash = configHash; self.schemaVersion = schemaVersion; self.shard = shard
    }
}
