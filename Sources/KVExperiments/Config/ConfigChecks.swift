// Checks of config values that need more than a type (issue 16): the output path, resource
// limits, and where each entry was written (so later checks can point at it).
import Foundation
import Yams

/// Where a config entry was written: its field path and YAML position.
public struct ConfigLocation: Sendable, Equatable {
    public var field: String
    public var line: Int?
    public var column: Int?

    init(_ f: Field) { field = f.path; line = f.node.mark?.line; column = f.node.mark?.column }
    public init(field: String, line: Int? = nil, column: Int? = nil) { self.field = field; self.line = line; self.column = column }

    func error(_ file: String, _ message: String, field sub: String? = nil) -> ConfigError {
        ConfigError(file: file, line: line, column: column, field: sub.map { "\(field).\($0)" } ?? field, message: message)
    }
}

/// The location of every model, task point and policy point (parallel to the config's arrays).
public struct ConfigLocations: Sendable, Equatable {
    public var models: [ConfigLocation] = []
    public var tasks: [ConfigLocation] = []
    public var policies: [ConfigLocation] = []
    public init(models: [ConfigLocation] = [], tasks: [ConfigLocation] = [], policies: [ConfigLocation] = []) {
        self.models = models; self.tasks = tasks; self.policies = policies
    }
}

/// Bounds on what one config may ask of the machine, checked before any work starts
/// (`kvlab validate` and `kvlab run`). Raise them explicitly in the config:
///
///     limits:
///       token_layers: 1e11   # per (model, task point): samples x (context + 128) x layers
///       memory_gib: 64       # weights + one sample's full KV cache, in GiB
public struct ResourceLimits: Sendable, Equatable {
    /// Default cap on samples x (context + 128) x layers per (model, task point): 1e10, about
    /// 10 million tokens through a 32-layer model (a few hours to days on a CPU).
    public static let defaultTokenLayers = 10_000_000_000
    public var tokenLayers = ResourceLimits.defaultTokenLayers
    /// GiB the weights (float32) plus one sample's full float32 KV cache may take; nil = the
    /// machine's physical memory.
    public var memoryGiB: Double?
    /// Whether the value came from the config (named in errors).
    public var explicit = false
    public init() {}

    /// Hard bounds of single fields, whatever the limits (they keep products from overflowing).
    public static let maxSamples = 1 << 20
    public static let maxContext = 1 << 24
}

extension Field {
    /// An integer in min...max.
    func int(min: Int, max: Int) throws -> Int {
        let v = try int(min: min)
        if v > max { throw error("expected an integer <= \(max), got \(v)") }
        return v
    }
}

enum ConfigChecks {
    /// `output:` must name a file: not empty, not a directory.
    static func outputPath(_ f: Field) throws -> String {
        let path = try f.string()
        if path.trimmingCharacters(in: .whitespaces).isEmpty { throw f.error("expected a results file path, got an empty string") }
        if path.hasSuffix("/") { throw f.error("expected a results file path, got a directory '\(path)'") }
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw f.error("'\(path)' is a directory; expected a results file path (e.g. \(path)/results.h5)")
        }
        return path
    }

    static func limits(_ f: Field) throws -> ResourceLimits {
        let m = try f.mapping(allowed: ["token_layers", "memory_gib"])
        var l = ResourceLimits()
        l.explicit = true
        if let t = m["token_layers"] {
            let v = try t.double()
            guard v >= 1, v <= 9e18 else { throw t.error("expected a positive number of token-layers, got \(v)") }
            l.tokenLayers = Int(v)
        }
        if let g = m["memory_gib"] {
            let v = try g.double()
            guard v > 0 else { throw g.error("expected a positive number of GiB, got \(v)") }
            l.memoryGiB = v
        }
        return l
    }
}
