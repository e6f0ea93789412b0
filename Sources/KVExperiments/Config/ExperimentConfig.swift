import Foundation
import KVCacheCore
import KVModel
import KVPolicies
import Yams

/// A model of an experiment: a checkpoint folder, a GGUF file or a synthetic shape, under an id,
/// with the precision of its KV cache (`kv_dtype`: every policy's stores and the full-cache
/// reference it is compared with).
public struct ModelEntry: Sendable {
    public var id: String
    public var spec: String            // folder or .gguf path, or synthetic:PRESET[,k=v...]
    public var source: ModelSource
    /// How the matrices are held: as the file stores them (default) or dequantized to Float32.
    public var weights: WeightPrecision = .stored
    public var kvDType: KVDType = .f32
}

/// A parsed, validated experiment config (docs/config.md). Every list-valued parameter is
/// already expanded: `grid` is the product models x tasks x policies.
public struct ExperimentConfig {
    public var file: String
    public var text: String
    public var name: String
    public var output: String
    public var threads: Int?
    public var seed: UInt64
    public var retentionMaps: Bool
    public var models: [ModelEntry]
    public var tasks: [TaskSpec]
    /// Per task point, the model ids it runs on (nil = every model): `models: [...]` in a task entry.
    public var taskModels: [[String]?]
    public var policies: [PolicySpec]
    /// Where each model, task point and policy point was written (for `Preflight`'s errors).
    public var locations = ConfigLocations()
    /// Resource bounds checked before a run starts (`limits:`; docs/config.md).
    public var limits = ResourceLimits()

    /// Most runs one config may describe (its grid is built in memory).
    static let maxRuns = 1_000_000
    static let topKeys = ["name", "description", "output", "threads", "seed", "retention_maps", "models", "tasks", "policies", "limits"]

    /// Reads and validates a YAML config file.
    public static func load(_ path: String) throws -> ExperimentConfig {
        guard FileManager.default.fileExists(atPath: path) else {
            throw ConfigError(file: path, field: "", message: "file not found")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, field: "", message: "not readable as UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> ExperimentConfig {
        let node = try YAMLInput.compose(text, file: file)
        let root = Field(node: node, path: "", file: file)
        let top = try root.mapping(allowed: topKeys)
        func required(_ k: String) throws -> Field {
            guard let f = top[k] else { throw root.error("missing required key '\(k)'") }
            return f
        }
        let seed = try top["seed"].map { UInt64(try $0.int(min: 0)) } ?? 0
        let name = try top["name"]?.string() ?? URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        let output = try top["output"].map(ConfigChecks.outputPath) ?? "results/out/\(name).h5"
        let threads = try top["threads"].map { try $0.int(min: 1) }
        let retention = try top["retention_maps"]?.bool() ?? false
        let modelFields = try required("models").list()
        let models = try modelFields.enumerated().map { try parseModel($1, index: $0) }
        if models.isEmpty { throw try required("models").error("expected at least one model") }
        for (i, m) in models.enumerated() where models[..<i].contains(where: { $0.id == m.id }) {
            throw modelFields[i].error("model id '\(m.id)' appears twice")
        }
        var locations = ConfigLocations(models: modelFields.map { ConfigLocation($0) })
        var taskPoints: [(TaskSpec, [String]?)] = []
        for f in try required("tasks").list() {
            let points = try TaskParser.expand(f, defaultSeed: seed, modelIDs: models.map(\.id))
            taskPoints += points
            locations.tasks += Array(repeating: ConfigLocation(f), count: points.count)
        }
        if taskPoints.isEmpty { throw try required("tasks").error("expected at least one task") }
        var policies: [PolicySpec] = []
        for f in try required("policies").list() {
            let points = try PolicyParser.expand(f)
            policies += points
            locations.policies += Array(repeating: ConfigLocation(f), count: points.count)
        }
        if policies.isEmpty { throw try required("policies").error("expected at least one policy") }
        let (runs, overflow) = (models.count * taskPoints.count).multipliedReportingOverflow(by: policies.count)
        if overflow || runs > maxRuns {
            throw root.error("models x task points x policy points = \(overflow ? "more than 9e18" : String(runs)) runs; a config may have at most \(maxRuns)")
        }
        var config = ExperimentConfig(file: file, text: text, name: name, output: output, threads: threads, seed: seed,
                                      retentionMaps: retention, models: models, tasks: taskPoints.map(\.0),
                                      taskModels: taskPoints.map(\.1), policies: policies)
        config.locations = locations
        config.limits = try top["limits"].map(ConfigChecks.limits) ?? ResourceLimits()
        return config
    }

    static func parseModel(_ f: Field, index: Int) throws -> ModelEntry {
        let m = try f.mapping(allowed: ["id", "path", "synthetic", "weights", "kv_dtype"])
        let spec: String
        switch (m["path"], m["synthetic"]) {
        case (let p?, nil):
            spec = try p.string()
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDir), isDir.boolValue || ModelSource.isGGUF(spec) else {
                throw p.error("checkpoint folder or .gguf file '\(spec)' not found (paths are relative to the current directory)")
            }
        case (nil, let s?):
            spec = "synthetic:" + (try s.string())
        default:
            throw f.error("expected exactly one of 'path' (a checkpoint folder or .gguf file) or 'synthetic' (PRESET[,key=value...])")
        }
        let source: ModelSource
        do { source = try ModelSource.parse(spec) } catch {
            throw (m["synthetic"] ?? f).error(error.localizedDescription)
        }
        var dtype = KVDType.f32
        if let k = m["kv_dtype"] {
            do { dtype = try KVDType(parsing: try k.string()) } catch let e as KVDTypeError {
                throw k.error("expected one of \(KVDType.allCases.map(\.rawValue).joined(separator: ", ")) (the KV cache's precision), got '\(e.value)'")
            }
        }
        let id = try m["id"]?.string() ?? (spec.hasPrefix("synthetic:") ? "synthetic\(index)" : URL(fileURLWithPath: spec).lastPathComponent)
        let weights = try m["weights"]?.choice(WeightPrecision.self) ?? .stored
        return ModelEntry(id: id, spec: spec, source: source, weights: weights, kvDType: dtype)
    }

    /// Every grid point in run order: model-major, then task, then policy (so one model's full-cache
    /// references serve all its policies).
    public var grid: [GridPoint] {
        var out: [GridPoint] = []
        for m in models { for (t, only) in zip(tasks, taskModels) where only?.contains(m.id) ?? true { for p in policies {
            out.append(GridPoint(index: out.count + 1, model: m, task: t, policy: p))
        } } }
        return out
    }

    /// Identity of the grid: the same points (whatever the YAML formatting or output) hash the same.
    public var gridHash: String {
        var h = SHA256()
        for g in grid { h.update(g.key); h.update("\n") }
        return h.finalize()
    }
}

/// One run of the sweep.
public struct GridPoint: Sendable {
    public var index: Int
    public var model: ModelEntry
    public var task: TaskSpec
    public var policy: PolicySpec

    /// What the run computes. The policy is its canonical label (fractional budgets as
    /// compression_ratio), so the key does not depend on whether the config wrote `keep: 0.125` or
    /// `compression_ratio: 0.875`.
    public var runKey: RunKey { RunKey(model: model, task: task, policy: policy.canonicalLabel) }
    /// The run key as results files hold it (JSON text).
    public var key: String { runKey.text }
}
