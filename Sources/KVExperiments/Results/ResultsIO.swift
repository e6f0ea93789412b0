// Writing and reading the groups of a results file (docs/results-schema.md): shared by
// ResultsStore, ResultsFile and ResultsMerge.
import Foundation
import KVHDF5

/// The writers and readers shared by ResultsStore, ResultsFile and ResultsMerge.
enum ResultsIO {
    /// One /summary row: the fixed columns of a run and its scalar metrics.
    struct Row {
        var run: String
        var index: Int
        var key: String
        var model: String
        var task: String
        var context: Int
        var seed: Int
        var policy: String
        var family: String
        var label: String
        var params: String
        var status: String
        var info: [(name: String, value: String)]
        var metrics: [(name: String, value: Double)]
        /// Who committed the run (nil: not recorded).
        var stamp: Stamp?

        init(_ r: RunRecord, stamp: Stamp? = nil) {
            run = ResultsSchema.runName(r.index); index = r.index; key = r.key; model = r.modelID; task = r.taskKind
            context = r.context; seed = r.seed; policy = r.policyKind; family = r.policyFamily; label = r.policyLabel
            params = r.policyParams; status = r.status; metrics = r.scalars.map { ($0.name, $0.value) }
            info = r.info.map { ($0.name, $0.value) }
            self.stamp = stamp
        }

        /// Reads the attributes of a /runs/<name> group (not its datasets).
        init(group g: H5Group, name: String) throws {
            run = name
            index = try g.intAttribute("index"); key = try g.stringAttribute("key"); model = try g.stringAttribute("model")
            task = try g.stringAttribute("task"); context = try g.intAttribute("context"); seed = try g.intAttribute("seed")
            policy = try g.stringAttribute("policy"); family = try g.stringAttribute("family")
            label = try g.stringAttribute("label"); params = try g.stringAttribute("params"); status = try g.stringAttribute("status")
            let infoNames = g.hasAttribute("info") ? try decodeNames(g.stringAttribute("info")) : []
            info = try infoNames.map { ($0, try g.stringAttribute($0)) }
            let names: [String]
            if g.hasAttribute("metrics") {
                names = try decodeNames(g.stringAttribute("metrics"))
            } else {
                names = try g.attributeNames().filter { !ResultsSchema.reservedRunAttributes.contains($0) && !infoNames.contains($0) }
            }
            metrics = try names.map { ($0, try g.doubleAttribute($0)) }
            if g.hasAttribute("committed") {
                func text(_ name: String) throws -> String { g.hasAttribute(name) ? try g.stringAttribute(name) : "" }
                stamp = Stamp(kvlabVersion: try text("kvlab_version"), gitCommit: try text("git_commit"),
                              host: try text("host"), committed: try text("committed"))
            }
        }
    }

    /// Who wrote a run: stored as attributes of each run group (the root keeps the file's creator).
    struct Stamp {
        var kvlabVersion: String, gitCommit: String, host: String, committed: String
    }

    static func encodeNames(_ names: [String]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return (try? String(decoding: encoder.encode(names), as: UTF8.self)) ?? "[]"
    }

    static func decodeNames(_ text: String) throws -> [String] {
        try JSONDecoder().decode([String].self, from: Data(text.utf8))
    }

    /// The UTC time as ISO 8601, e.g. 2025-01-31T12:00:00Z.
    static func utcNow() -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date())
    }

    /// A model id as a group name: '%' and '/' percent-encoded (the `id` attribute keeps the original).
    static func modelGroupName(_ id: String) -> String {
        let escaped = id.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
        if escaped == "." { return "%2E" }
        return escaped.isEmpty ? "%" : escaped      // "%" alone never results from escaping
    }

    /// Why `name` cannot be a dataset/attribute name for a metric, or nil.
    static func metricNameProblem(_ name: String) -> String? {
        if name.isEmpty { return "empty metric name" }
        if name.contains("/") || name == "." { return "metric name '\(name)' contains '/' or is '.'" }
        if name.utf8.contains(0) { return "metric name contains a NUL character" }
        return nil
    }

    /// Checks that `r` can be stored (names, shapes), naming the problem.
    static func validate(_ r: RunRecord, file: String) throws {
        func fail(_ reason: String) -> ResultsError { .invalidRun(file: file, index: r.index, reason: reason) }
        if r.index < 0 { throw fail("negative grid index") }
        for s in [r.key, r.modelID, r.taskKind, r.policyKind, r.policyFamily, r.policyLabel, r.policyParams, r.status]
            + r.info.map(\.value)
        where s.utf8.contains(0) { throw fail("a string field contains a NUL character") }
        var seen = Set<String>()
        for i in r.info {
            if let p = metricNameProblem(i.name) { throw fail(p.replacingOccurrences(of: "metric", with: "info")) }
            if ResultsSchema.reservedRunAttributes.contains(i.name) { throw fail("info name '\(i.name)' is reserved") }
            if !seen.insert(i.name).inserted { throw fail("info '\(i.name)' appears twice") }
        }
        for m in r.scalars {
            if let p = metricNameProblem(m.name) { throw fail(p) }
            if ResultsSchema.reservedRunAttributes.contains(m.name) { throw fail("metric name '\(m.name)' is reserved") }
            if r.info.contains(where: { $0.name == m.name }) { throw fail("metric '\(m.name)' is also an info name") }
            if !seen.insert(m.name).inserted { throw fail("metric '\(m.name)' appears twice") }
        }
        seen = []
        for s in r.perSample {
            if let p = metricNameProblem(s.name) { throw fail(p) }
            if !seen.insert(s.name).inserted { throw fail("per-sample series '\(s.name)' appears twice") }
        }
        seen = []
        for t in r.texts {
            if let p = metricNameProblem(t.name) { throw fail(p) }
            if !seen.insert(t.name).inserted { throw fail("text series '\(t.name)' appears twice") }
            if t.values.contains(where: { $0.utf8.contains(0) }) { throw fail("text series '\(t.name)' contains a NUL character") }
        }
        seen = []
        for g in r.perLayerHead {
            if let p = metricNameProblem(g.name) { throw fail(p) }
            if !seen.insert(g.name).inserted { throw fail("layer x head grid '\(g.name)' appears twice") }
            if g.layers < 0 || g.heads < 0 || g.layers * g.heads != g.values.count {
                throw fail("layer x head grid '\(g.name)' has \(g.values.count) values for [\(g.layers), \(g.heads)]")
            }
        }
        if let ret = r.retention {
            if ret.shape.contains(where: { $0 < 0 }) || ret.shape.reduce(1, *) != ret.positions.count {
                throw fail("retention map has \(ret.positions.count) values for shape \(ret.shape)")
            }
        }
    }

    // MARK: - Writers

    static func writeProvenance(_ p: Provenance, to root: H5Group) throws {
        try root.setAttribute("kvlab_version", p.kvlabVersion)
        try root.setAttribute("git_commit", p.gitCommit)
        try root.setAttribute("created", p.created)
        try root.setAttribute("host", p.host)
        try root.setAttribute("config", p.configText)
        try root.setAttribute("config_hash", p.configHash)
        try root.setAttribute("schema_version", ResultsSchema.version)
        try root.setAttribute("shard", p.shard)
    }

    static func writeModels(_ models: [ModelRecord], to root: H5Group) throws {
        let group = try root.createGroup("model")
        for m in models {
            let g = try group.createGroup(modelGroupName(m.id))
            try g.setAttribute("id", m.id)
            try g.setAttribute("source", m.source)
            try g.setAttribute("config_json", m.configJSON)
            try g.setAttribute("parameter_count", m.parameterCount)
            try g.setAttribute("kv_bytes_per_token", m.kvBytesPerToken)
            try g.setAttribute("config_hash", m.configHash)
            try g.setAttribute("weights_hash", m.weightsHash)
        }
    }

    /// Writes run `r` as /runs/<index> under `runs`.
    static func writeRun(_ r: RunRecord, stamp: Stamp, to runs: H5Group) throws {
        let g = try runs.createGroup(ResultsSchema.runName(r.index))
        try writeRunAttributes(Row(r, stamp: stamp), to: g)
        let samples = try g.createGroup("samples")
        try samples.setAttribute("order", encodeNames(r.perSample.map(\.name)))
        for s in r.perSample { try samples.write(s.name, doubles: s.values, shape: [s.values.count]) }
        let grids = try g.createGroup("layer_head")
        try grids.setAttribute("order", encodeNames(r.perLayerHead.map(\.name)))
        for m in r.perLayerHead { try grids.write(m.name, floats: m.values, shape: [m.layers, m.heads]) }
        if let ret = r.retention { try g.write("retention", int32s: ret.positions, shape: ret.shape, gzip: 4) }
        if !r.texts.isEmpty {
            let texts = try g.createGroup("text")
            try texts.setAttribute("order", encodeNames(r.texts.map(\.name)))
            for t in r.texts { try texts.write(t.name, strings: t.values) }
        }
    }

    /// The attributes of a /runs/<index> group.
    static func writeRunAttributes(_ row: Row, to g: H5Group) throws {
        try g.setAttribute("index", row.index)
        try g.setAttribute("key", row.key)
        try g.setAttribute("model", row.model)
        try g.setAttribute("task", row.task)
        try g.setAttribute("context", row.context)
        try g.setAttribute("seed", row.seed)
        try g.setAttribute("policy", row.policy)
        try g.setAttribute("family", row.family)
        try g.setAttribute("label", row.label)
        try g.setAttribute("params", row.params)
        try g.setAttribute("status", row.status)
        try g.setAttribute("metrics", encodeNames(row.metrics.map(\.name)))
        if !row.info.isEmpty {
            try g.setAttribute("info", encodeNames(row.info.map(\.name)))
            for i in row.info { try g.setAttribute(i.name, i.value) }
        }
        if let stamp = row.stamp {
            try g.setAttribute("kvlab_version", stamp.kvlabVersion)
            try g.setAttribute("git_commit", stamp.gitCommit)
            try g.setAttribute("host", stamp.host)
            try g.setAttribute("committed", stamp.committed)
        }
        for m in row.metrics { try g.setAttribute(m.name, m.value) }
    }

    /// Copies the committed run `row` from the /runs group `source` (of another file) into `runs`
    /// under its index: its datasets and subgroups with H5Ocopy (stored bytes unchanged, gzip chunks
    /// included), its attributes rewritten with the same values and types.
    ///
    /// Not one H5Ocopy of the whole group: HDF5 before 1.14.4 (Debian's 1.10.8 included) crashes
    /// copying an object whose attributes are in dense storage (more than 8) when one of them has a
    /// variable-length type (HDFGroup/hdf5#2414, fixed by PR #3967), which run groups always are.
    static func copyRun(_ row: Row, from source: H5Group, to runs: H5Group) throws {
        let src = try source.group(row.run)
        var row = row
        row.run = ResultsSchema.runName(row.index)
        let g = try runs.createGroup(row.run)
        try writeRunAttributes(row, to: g)
        for member in try src.memberNames() { try src.copy(member, to: g, as: member) }
    }

    /// Writes /summary: one 1-D dataset per column, rows sorted by index.
    static func writeSummary(_ rows: [Row], to root: H5Group) throws {
        let rows = rows.sorted { $0.index < $1.index }
        let g = try root.createGroup("summary")
        var metricNames: [String] = [], infoNames: [String] = []
        var known = Set<String>()
        for row in rows { for i in row.info where known.insert(i.name).inserted { infoNames.append(i.name) } }
        for row in rows { for m in row.metrics where known.insert(m.name).inserted { metricNames.append(m.name) } }
        try g.setAttribute("columns", encodeNames(ResultsSchema.fixedColumns + infoNames + metricNames))
        try g.setAttribute("rows", rows.count)
        let n = [rows.count]
        try g.write("run", strings: rows.map(\.run))
        try g.write("index", int64s: rows.map { Int64($0.index) }, shape: n)
        try g.write("key", strings: rows.map(\.key))
        try g.write("model", strings: rows.map(\.model))
        try g.write("task", strings: rows.map(\.task))
        try g.write("context", int64s: rows.map { Int64($0.context) }, shape: n)
        try g.write("seed", int64s: rows.map { Int64($0.seed) }, shape: n)
        try g.write("policy", strings: rows.map(\.policy))
        try g.write("family", strings: rows.map(\.family))
        try g.write("label", strings: rows.map(\.label))
        try g.write("params", strings: rows.map(\.params))
        try g.write("status", strings: rows.map(\.status))
        for name in infoNames {
            try g.write(name, strings: rows.map { row in row.info.first { $0.name == name }?.value ?? "" })
        }
        for name in metricNames {
            let column = rows.map { row in row.metrics.first { $0.name == name }?.value ?? .nan }
            try g.write(name, doubles: column, shape: n)
        }
    }

    // MARK: - Readers

    /// The identity of an open results file: its provenance (after the schema check).
    static func readRootProvenance(_ file: H5File) throws -> Provenance {
        let root = file.root
        guard root.hasAttribute("schema_version") else {
            if !root.hasAttribute("config_hash") {
                throw ResultsError.notResultsFile(file: file.path, reason: "no schema_version or config_hash root attribute")
            }
            throw ResultsError.unsupportedSchema(file: file.path, found: nil, supported: ResultsSchema.version)
        }
        let version = try root.intAttribute("schema_version")
        guard (1 ... ResultsSchema.version).contains(version) else {
            throw ResultsError.unsupportedSchema(file: file.path, found: version, supported: ResultsSchema.version)
        }
        guard root.hasAttribute("config_hash") else {
            throw ResultsError.notResultsFile(file: file.path, reason: "no config_hash root attribute")
        }
        func text(_ name: String) throws -> String { root.hasAttribute(name) ? try root.stringAttribute(name) : "" }
        return Provenance(kvlabVersion: try text("kvlab_version"), gitCommit: try text("git_commit"),
                          created: try text("created"), host: try text("host"), configText: try text("config"),
                          configHash: try root.stringAttribute("config_hash"), schemaVersion: version, shard: try text("shard"))
    }

    static func readModels(_ file: H5File) throws -> [ModelRecord] {
        guard file.root.exists("model") else { return [] }
        let group = try file.root.group("model")
        return try group.memberNames().map { name in
            let g = try group.group(name)
            return ModelRecord(id: g.hasAttribute("id") ? try g.stringAttribute("id") : name,
                               source: try g.stringAttribute("source"), configJSON: try g.stringAttribute("config_json"),
                               parameterCount: try g.intAttribute("parameter_count"),
                               kvBytesPerToken: try g.intAttribute("kv_bytes_per_token"),
                               configHash: try g.stringAttribute("config_hash"), weightsHash: try g.stringAttribute("weights_hash"))
        }
    }

    /// The summary rows of every /runs group (attributes only), sorted by index.
    static func readRunRows(_ file: H5File) throws -> [Row] {
        guard file.root.exists("runs") else { return [] }
        let runs = try file.root.group("runs")
        return try runs.memberNames().map { try Row(group: runs.group($0), name: $0) }.sorted { $0.index < $1.index }
    }

    /// Reads a whole run back (attributes and datasets).
    static func readRun(_ g: H5Group, name: String) throws -> RunRecord {
        let row = try Row(group: g, name: name)
        var r = RunRecord(index: row.index, key: row.key, modelID: row.model, taskKind: row.task, context: row.context,
                          seed: row.seed, policyKind: row.policy, policyFamily: row.family, policyLabel: row.label,
                          policyParams: row.params, status: row.status,
                          scalars: row.metrics.map { RunRecord.Metric($0.name, $0.value) })
        r.info = row.info.map { RunRecord.Info($0.name, $0.value) }
        func order(_ sub: H5Group) throws -> [String] {
            sub.hasAttribute("order") ? try decodeNames(sub.stringAttribute("order")) : try sub.memberNames()
        }
        if g.exists("samples") {
            let sub = try g.group("samples")
            r.perSample = try order(sub).map { RunRecord.Series($0, try sub.readDoubles($0).values) }
        }
        if g.exists("layer_head") {
            let sub = try g.group("layer_head")
            r.perLayerHead = try order(sub).map { name in
                let (values, shape) = try sub.readFloats(name)
                guard shape.count == 2 else {
                    throw ResultsError.failed(file: g.file.path, reason: "\(sub.path)/\(name) has shape \(shape), expected [layers, heads]")
                }
                return RunRecord.Grid(name, values, layers: shape[0], heads: shape[1])
            }
        }
        if g.exists("retention") {
            let (values, shape) = try g.readInt32s("retention")
            r.retention = RunRecord.Retention(positions: values, shape: shape)
        }
        if g.exists("text") {
            let sub = try g.group("text")
            r.texts = try order(sub).map { RunRecord.TextSeries($0, try sub.readStrings($0).values) }
        }
        return r
    }

    /// Opens an existing results file read-only, turning "not HDF5 / damaged" into `ResultsError.unreadable`.
    /// `requireStamp`: the file is resumed, merged or compared, so it must carry KVLab's integrity
    /// stamp (H5File.open); a file only read (report, status) may come from another program.
    static func openResultsFile(_ path: String, requireStamp: Bool = false) throws -> H5File {
        do {
            return try H5File.open(path, requireStamp: requireStamp)
        } catch let error as H5Error {
            if case .fileNotFound = error { throw ResultsError.failed(file: path, reason: "no such file") }
            if case .unstamped = error { throw ResultsError.unstamped(file: path) }
            throw ResultsError.unreadable(file: path, reason: error.localizedDescription)
        }
    }
}
