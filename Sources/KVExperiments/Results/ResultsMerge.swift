// `kvlab merge`: combine shard files of one config into one results file.
import Foundation
import KVHDF5

public enum ResultsMerge {
    /// Merges the results files `inputs` (e.g. the shards of one sweep) into `output`, written
    /// atomically; returns the number of runs in it.
    ///
    /// All inputs must have the same `config_hash` (the error names the first mismatching file).
    /// A grid index present in several inputs must have the same key there (one copy is kept,
    /// from the first input holding it); different keys are an error. Runs are copied as by `copyRun`.
    /// Models are the union (same id with other hashes is an error). The output keeps the first
    /// input's provenance with `shard` "" and the root attributes `merged_from` (JSON array of
    /// the inputs' paths) and `merged` (UTC time). An existing `output` is refused unless `force`;
    /// one that a sweep or another merge is writing (it holds the lock) always is. `update`: an
    /// existing output of the same config is replaced only if every run in it is in the inputs
    /// (`MergeCheck.checkUpdate`, read while the lock is held).
    @discardableResult
    public static func merge(_ inputs: [String], into output: String, force: Bool, update: Bool = false) throws -> Int {
        guard !inputs.isEmpty else { throw ResultsError.failed(file: output, reason: "nothing to merge: no input files") }
        // The writer's lock of the output, as `kvlab run` takes it: a sweep writing the file (or
        // another merge) makes this fail instead of replacing its file under it. Holding it, the
        // temporary files of interrupted merges and sweeps are removed.
        let lock = try ResultsLock.acquire(output)
        defer { lock.release() }
        lock.removeStaleTemporaries()
        let replace = try force || (update && MergeCheck.checkUpdate(output: lock.path, inputs: inputs))
        if FileManager.default.fileExists(atPath: lock.path) && !replace { throw ResultsError.outputExists(file: output) }

        var files: [H5File] = []
        defer { for f in files { try? f.close() } }
        var reference: Provenance?
        var models: [ModelRecord] = []
        var modelSource: [String: String] = [:]
        var chosen: [Int: (file: Int, row: ResultsIO.Row)] = [:]
        for (i, input) in inputs.enumerated() {
            let file = try ResultsIO.openResultsFile(input, requireStamp: true)
            files.append(file)
            let provenance = try ResultsIO.readRootProvenance(file)
            if let reference, provenance.configHash != reference.configHash {
                throw ResultsError.mergeConfigMismatch(file: input, fileHash: provenance.configHash,
                                                       reference: inputs[0], referenceHash: reference.configHash)
            }
            if reference == nil { reference = provenance }
            for m in try ResultsIO.readModels(file) {
                if let old = models.first(where: { $0.id == m.id }) {
                    if old.configHash != m.configHash || old.weightsHash != m.weightsHash {
                        throw ResultsError.modelMismatch(
                            file: input, id: m.id,
                            reason: "config_hash \(m.configHash), weights_hash \(m.weightsHash) here; " +
                                "\(old.configHash), \(old.weightsHash) in '\(modelSource[m.id] ?? "")'")
                    }
                } else {
                    models.append(m); modelSource[m.id] = input
                }
            }
            for row in try ResultsIO.readRunRows(file) {
                if let kept = chosen[row.index] {
                    if kept.row.key != row.key {
                        throw ResultsError.mergeConflict(index: row.index, file: inputs[kept.file], key: kept.row.key,
                                                         otherFile: input, otherKey: row.key)
                    }
                    continue
                }
                chosen[row.index] = (i, row)
            }
        }
        var provenance = reference!
        provenance.shard = ""
        let order = chosen.keys.sorted()
        try H5File.writeAtomically(to: lock.path) { out in
            try ResultsIO.writeProvenance(provenance, to: out.root)
            try out.root.setAttribute("merged_from", ResultsIO.encodeNames(inputs))
            try out.root.setAttribute("merged", ResultsIO.utcNow())
            try ResultsIO.writeModels(models, to: out.root)
            let runs = try out.root.createGroup("runs")
            let sources = try files.map { try $0.root.group("runs") }
            for index in order {
                let (source, row) = chosen[index]!
                try ResultsIO.copyRun(row, from: sources[source], to: runs)
            }
            try ResultsIO.writeSummary(order.map { index in
                var row = chosen[index]!.row
                row.run = ResultsSchema.runName(index)
                return row
            }, to: out.root)
        }
        return order.count
    }
}
