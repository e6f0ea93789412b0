import Foundation
import XCTest
import KVHDF5
@testable import KVExperiments

final class ResultsTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("kvres-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    // MARK: - Fixtures

    static func provenance(hash: String = "cfg-aaaa", shard: String = "") -> Provenance {
        Provenance(kvlabVersion: "0.1.0", gitCommit: "0123abcd", created: "2025-01-31T12:00:00Z", host: "testhost",
                   configText: "models:\n  - tiny\ntasks: [passkey]\n# hash \(hash)\n", configHash: hash,
                   schemaVersion: 1, shard: shard)
    }

    static let models = [
        ModelRecord(id: "tiny-llama", source: "synthetic:llama", configJSON: #"{"hidden_size":64,"num_layers":2}"#,
                    parameterCount: 123_456, kvBytesPerToken: 1024, configHash: "c0ffee", weightsHash: "seed:7"),
        ModelRecord(id: "org/Model-1B", source: "/models/m1b", configJSON: "{}", parameterCount: 1_000_000_000,
                    kvBytesPerToken: 32768, configHash: "beef", weightsHash: "sha256:abcd"),
    ]

    /// A run with every kind of data; `withRetention`/`extraMetric` vary the shape of the record.
    static func run(_ index: Int, key: String? = nil, score: Double? = nil, withRetention: Bool = true,
                    extraMetric: Bool = true, samples: Int = 3) -> RunRecord {
        let s = Double(index)
        var scalars = [RunRecord.Metric("score", score ?? (0.5 + 0.01 * s)),
                       RunRecord.Metric("kv_bytes_stored_peak", 4096 * s)]
        if extraMetric { scalars.append(RunRecord.Metric("compression", 1 / (1 + s))) }
        scalars.append(RunRecord.Metric("wall_prefill_per_token", 1e-4 * s))
        let layers = 2, heads = 3, kvHeads = 1, maxKept = 4
        var retention: RunRecord.Retention?
        if withRetention {
            var positions: [Int32] = []
            for sample in 0 ..< samples {
                for layer in 0 ..< layers {
                    for _ in 0 ..< kvHeads {
                        let kept = (sample + layer + index) % maxKept + 1
                        for j in 0 ..< maxKept { positions.append(j < kept ? Int32(j * 3 + layer) : -1) }
                    }
                }
            }
            retention = .init(positions: positions, shape: [samples, layers, kvHeads, maxKept])
        }
        return RunRecord(
            index: index, key: key ?? #"{"model":"tiny-llama","policy":"snapkv","i":\#(index)}"#,
            modelID: index % 3 == 0 ? "org/Model-1B" : "tiny-llama", taskKind: "passkey", context: 512 * (1 + index % 2),
            seed: index * 7, policyKind: "snapkv", policyFamily: "eviction", policyLabel: "snapkv(r=0.\(index % 10))",
            policyParams: #"{"ratio":0.\#(index % 10),"window":16}"#, status: index % 5 == 4 ? "error: boom, \"quoted\"" : "ok",
            scalars: scalars,
            perSample: [.init("score", (0 ..< samples).map { Double($0) * 0.25 + s }),
                        .init("depth", (0 ..< samples).map { Double($0) / Double(max(samples, 1)) })],
            perLayerHead: [.init("kept_fraction", (0 ..< layers * heads).map { Float($0) * 0.125 + Float(index) },
                                 layers: layers, heads: heads),
                           .init("attention_mass", (0 ..< layers * heads).map { 1 / Float($0 + 1) }, layers: layers, heads: heads)],
            retention: retention)
    }

    func openStore(_ p: String, hash: String = "cfg-aaaa", models: [ModelRecord] = ResultsTests.models,
                   force: Bool = false, shard: String = "") throws -> ResultsStore {
        try ResultsStore.open(path: p, provenance: Self.provenance(hash: hash, shard: shard), models: models, force: force)
    }

    func resultsError(_ body: @autoclosure () throws -> Any, file: StaticString = #filePath, line: UInt = #line) -> ResultsError? {
        do {
            _ = try body()
            XCTFail("expected a ResultsError", file: file, line: line)
        } catch let e as ResultsError {
            return e
        } catch {
            XCTFail("expected a ResultsError, got \(error)", file: file, line: line)
        }
        return nil
    }

    // MARK: - Round trip

    func testCommitReadRoundTrip() throws {
        let p = path("results.h5")
        let store = try openStore(p)
        let runs = [Self.run(1), Self.run(2, extraMetric: false), Self.run(3, withRetention: false), Self.run(4)]
        try store.commit(runs[0])
        try store.commitBatch(Array(runs[1...]))
        XCTAssertEqual(store.finished, Dictionary(uniqueKeysWithValues: runs.map { ($0.index, $0.key) }))
        store.close()

        let file = try ResultsFile.read(p)
        XCTAssertEqual(file.provenance, Self.provenance())
        XCTAssertEqual(file.models.sorted { $0.id < $1.id }, Self.models.sorted { $0.id < $1.id })
        XCTAssertEqual(file.runs, runs)
        XCTAssertEqual(file.run(index: 3)?.retention, nil)

        // The layout as h5py/pandas see it.
        let h5 = try H5File.open(p)
        XCTAssertEqual(try h5.root.intAttribute("schema_version"), 1)
        XCTAssertEqual(try h5.root.stringAttribute("config_hash"), "cfg-aaaa")
        XCTAssertEqual(try h5.root.group("runs").memberNames(), ["000001", "000002", "000003", "000004"])
        XCTAssertTrue(h5.root.exists("model/org%2FModel-1B"))
        let r2 = try h5.root.group("runs/000002")
        XCTAssertEqual(try r2.doubleAttribute("score"), 0.52)
        XCTAssertEqual(try r2.stringAttribute("params"), #"{"ratio":0.2,"window":16}"#)
        XCTAssertEqual(try r2.datasetShape("layer_head/kept_fraction"), [2, 3])
        XCTAssertEqual(try r2.datasetShape("retention"), [3, 2, 1, 4])
        let summary = try h5.root.group("summary")
        XCTAssertEqual(try summary.readStrings("run").values, ["000001", "000002", "000003", "000004"])
        XCTAssertEqual(try summary.readInt64s("index").values, [1, 2, 3, 4])
        XCTAssertEqual(try summary.readInt64s("context").values, [1024, 512, 1024, 512])
        XCTAssertEqual(try summary.readStrings("status").values, ["ok", "ok", "ok", "error: boom, \"quoted\""])
        let compression = try summary.readDoubles("compression").values
        XCTAssertEqual(compression[0], 0.5); XCTAssertTrue(compression[1].isNaN); XCTAssertEqual(compression[3], 0.2)
        XCTAssertEqual(try ResultsIO.decodeNames(summary.stringAttribute("columns")),
                       ResultsSchema.fixedColumns + ["score", "kv_bytes_stored_peak", "compression", "wall_prefill_per_token"])
        try h5.close()

        if let sample = ProcessInfo.processInfo.environment["KVLAB_RESULTS_SAMPLE"] {
            try? FileManager.default.removeItem(atPath: sample)
            try FileManager.default.copyItem(atPath: p, toPath: sample)
        }
    }

    func testEmptyStoreWritesAValidFile() throws {
        let p = path("sub/dir/empty.h5")
        let store = try openStore(p, models: [])
        XCTAssertTrue(store.finished.isEmpty)
        store.close()
        let file = try ResultsFile.read(p)
        XCTAssertEqual(file.runs, []); XCTAssertEqual(file.models, [])
        XCTAssertEqual(try ResultsReport.table(file), "index  model  task  context  label  status\n-----  -----  ----  -------  -----  ------\n")
    }

    func testInvalidRunsAreRefused() throws {
        let store = try openStore(path("r.h5"))
        var r = Self.run(1)
        r.scalars.append(.init("status", 1))
        guard case .invalidRun? = resultsError(try store.commit(r)) else { return XCTFail() }
        r = Self.run(1); r.perLayerHead[0].layers = 5
        guard case .invalidRun? = resultsError(try store.commit(r)) else { return XCTFail() }
        r = Self.run(1); r.perSample.append(.init("a/b", []))
        guard case .invalidRun? = resultsError(try store.commit(r)) else { return XCTFail() }
        r = Self.run(1); r.retention?.shape = [1, 1]
        guard case .invalidRun? = resultsError(try store.commit(r)) else { return XCTFail() }
        XCTAssertTrue(store.finished.isEmpty)
        XCTAssertEqual(try ResultsFile.read(path("r.h5")).runs, [])
    }

    // MARK: - Resume, refusal, force

    func testResumeSeesFinishedRunsAndNeverDuplicates() throws {
        let p = path("resume.h5")
        var store = try openStore(p)
        try store.commitBatch([Self.run(1), Self.run(2)])
        store.close()
        let before = try ResultsFile.read(p)

        var later = Self.provenance()
        later.gitCommit = "fedcba98"; later.created = "2025-02-01T00:00:00Z"
        store = try ResultsStore.open(path: p, provenance: later, models: Self.models, force: false)
        XCTAssertEqual(store.finished, [1: Self.run(1).key, 2: Self.run(2).key])
        XCTAssertEqual(store.provenance, Self.provenance())      // the file keeps its creator's provenance
        XCTAssertTrue(store.isFinished(index: 2, key: Self.run(2).key))
        XCTAssertFalse(store.isFinished(index: 3, key: Self.run(3).key))
        guard case let .duplicateRun(_, 1, key, existing)? = resultsError(try store.commit(Self.run(1))) else { return XCTFail() }
        XCTAssertEqual(key, existing)
        guard case let .duplicateRun(_, 2, other, _)? = resultsError(try store.commit(Self.run(2, key: "other"))) else {
            return XCTFail()
        }
        XCTAssertEqual(other, "other")
        guard case .duplicateRun? = resultsError(try store.commitBatch([Self.run(5), Self.run(5)])) else { return XCTFail() }
        try store.commit(Self.run(3))
        store.close()

        let after = try ResultsFile.read(p)
        XCTAssertEqual(after.runs, [Self.run(1), Self.run(2), Self.run(3)])
        XCTAssertEqual(Array(after.runs.prefix(2)), before.runs)
        XCTAssertEqual(after.provenance, Self.provenance())
        // Committed runs are copied verbatim: each keeps the stamp of the session that committed it.
        let h5 = try H5File.open(p)
        XCTAssertEqual(try h5.root.group("runs/000001").stringAttribute("git_commit"), "0123abcd")
        XCTAssertEqual(try h5.root.group("runs/000003").stringAttribute("git_commit"), "fedcba98")
        try h5.close()
    }

    func testDifferentConfigIsRefusedAndForceKeepsBackup() throws {
        let p = path("cfg.h5")
        let store = try openStore(p)
        try store.commit(Self.run(1))
        store.close()
        let bytes = try Data(contentsOf: URL(fileURLWithPath: p))

        let error = resultsError(try openStore(p, hash: "cfg-bbbb"))
        guard case let .configMismatch(_, fileHash, requested)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertEqual(fileHash, "cfg-aaaa"); XCTAssertEqual(requested, "cfg-bbbb")
        let message = error?.localizedDescription ?? ""
        XCTAssertTrue(message.contains("cfg-aaaa") && message.contains("cfg-bbbb") && message.contains("--force"), message)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), bytes)

        let forced = try openStore(p, hash: "cfg-bbbb", force: true)
        let backup = try XCTUnwrap(forced.backupPath)
        XCTAssertTrue(backup.hasPrefix(p + ".bak-"), backup)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: backup)), bytes)
        XCTAssertTrue(forced.finished.isEmpty)
        try forced.commit(Self.run(7))
        forced.close()
        let file = try ResultsFile.read(p)
        XCTAssertEqual(file.provenance.configHash, "cfg-bbbb")
        XCTAssertEqual(file.runs.map(\.index), [7])
        XCTAssertEqual(try ResultsFile.read(backup).runs, [Self.run(1)])
    }

    func testModelOfOtherWeightsIsRefused() throws {
        let p = path("m.h5")
        try openStore(p).close()
        var changed = Self.models
        changed[0].weightsHash = "seed:8"
        guard case .modelMismatch? = resultsError(try openStore(p, models: changed)) else { return XCTFail() }
        // A new model is added to the file.
        let extra = ModelRecord(id: "third", source: "s", configJSON: "{}", parameterCount: 1, kvBytesPerToken: 2,
                                configHash: "h", weightsHash: "w")
        try openStore(p, models: [extra]).close()
        XCTAssertEqual(try ResultsFile.read(p).models.map(\.id).sorted(), ["org/Model-1B", "third", "tiny-llama"])
    }

    func testUnreadableOrForeignFilesAreRefusedAndKept() throws {
        let p = path("garbage.h5")
        let junk = Data("this is not HDF5 at all, maybe a file cut short by a crash".utf8)
        try junk.write(to: URL(fileURLWithPath: p))
        let error = resultsError(try openStore(p))
        guard case .unreadable? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(error!.localizedDescription.contains(p))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: p)), junk)
        guard case .unreadable? = resultsError(try ResultsFile.read(p)) else { return XCTFail() }
        let forced = try openStore(p, force: true)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: forced.backupPath!)), junk)
        forced.close()

        let foreign = path("logits.h5")
        try H5File.writeAtomically(to: foreign) { try $0.root.write("logits", floats: [1, 2], shape: [2]) }
        guard case .notResultsFile? = resultsError(try openStore(foreign)) else { return XCTFail() }
        XCTAssertTrue(H5File.isHDF5(foreign))
    }

    func testSecondWriterIsLockedOut() throws {
        let p = path("locked.h5")
        let first = try openStore(p)
        guard case .locked? = resultsError(try openStore(p)) else { return XCTFail() }
        first.close()
        XCTAssertThrowsError(try first.commit(Self.run(1)))
        try openStore(p).close()
    }

    func testSchemaVersionRefusal() throws {
        let p = path("v.h5")
        try openStore(p).close()
        let file = try H5File.open(p, writable: true)
        try file.root.setAttribute("schema_version", 2)
        try file.close()
        let error = resultsError(try ResultsFile.read(p))
        guard case .unsupportedSchema(_, 2, 1)? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(error!.localizedDescription.contains("schema_version 2") && error!.localizedDescription.contains("1...1"))
        guard case .unsupportedSchema? = resultsError(try openStore(p)) else { return XCTFail() }
        guard case .unsupportedSchema? = resultsError(try ResultsMerge.merge([p], into: path("m.h5"), force: false)) else {
            return XCTFail()
        }

        let missing = path("nov.h5")
        try H5File.writeAtomically(to: missing) { try $0.root.setAttribute("config_hash", "x") }
        let e2 = resultsError(try ResultsFile.read(missing))
        guard case .unsupportedSchema(_, nil, 1)? = e2 else { return XCTFail("\(String(describing: e2))") }
        XCTAssertTrue(e2!.localizedDescription.contains("no schema_version"))
    }

    // MARK: - Merge

    func testMergeOfShardsIsTheUnion() throws {
        let all = (1 ... 7).map { Self.run($0) }
        var shards: [String] = []
        for shard in 0 ..< 2 {
            let p = path("shard\(shard).h5")
            let store = try openStore(p, models: shard == 0 ? [Self.models[0]] : Self.models, shard: "\(shard)/2")
            try store.commitBatch(all.filter { $0.index % 2 == shard })
            if shard == 1 { try store.commit(all[1]) }      // index 2 in both shards, same key
            store.close()
            shards.append(p)
        }
        let out = path("merged.h5")
        XCTAssertEqual(try ResultsMerge.merge(shards, into: out, force: false), 7)
        let merged = try ResultsFile.read(out)
        XCTAssertEqual(merged.runs, all)
        XCTAssertEqual(merged.provenance, Self.provenance(hash: "cfg-aaaa", shard: ""))
        XCTAssertEqual(merged.models.map(\.id).sorted(), ["org/Model-1B", "tiny-llama"])
        let h5 = try H5File.open(out)
        XCTAssertEqual(try ResultsIO.decodeNames(h5.root.stringAttribute("merged_from")), shards)
        XCTAssertEqual(try h5.root.group("summary").readInt64s("index").values, [1, 2, 3, 4, 5, 6, 7])
        try h5.close()

        guard case .outputExists? = resultsError(try ResultsMerge.merge(shards, into: out, force: false)) else {
            return XCTFail()
        }
        XCTAssertEqual(try ResultsMerge.merge([shards[0]], into: out, force: true), 3)
        XCTAssertEqual(try ResultsFile.read(out).runs.map(\.index), [2, 4, 6])
    }

    func testMergeRefusesMismatchedConfigsAndConflicts() throws {
        let a = path("a.h5"), b = path("b.h5"), c = path("c.h5")
        for (p, hash, run) in [(a, "cfg-aaaa", Self.run(1)), (b, "cfg-bbbb", Self.run(2)), (c, "cfg-aaaa", Self.run(1, key: "k"))] {
            let store = try openStore(p, hash: hash)
            try store.commit(run)
            store.close()
        }
        let error = resultsError(try ResultsMerge.merge([a, b], into: path("o.h5"), force: false))
        guard case .mergeConfigMismatch(b, "cfg-bbbb", a, "cfg-aaaa")? = error else { return XCTFail("\(String(describing: error))") }
        XCTAssertTrue(error!.localizedDescription.contains(b))
        guard case .mergeConflict(1, a, _, c, "k")? = resultsError(try ResultsMerge.merge([a, c], into: path("o.h5"), force: false)) else {
            return XCTFail()
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("o.h5")))
    }

    // MARK: - Report

    func testReportSortingAndCSV() throws {
        let p = path("report.h5")
        let store = try openStore(p)
        try store.commitBatch([Self.run(1, score: 0.5), Self.run(2, score: 0.9, extraMetric: false),
                               Self.run(3, score: 0.1), Self.run(4, score: .nan)])
        store.close()
        let file = try ResultsFile.read(p)

        let table = try ResultsReport.table(file, sortBy: "score", descending: true)
        let lines = table.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[0].split(separator: " ").map(String.init),
                       ["index", "model", "task", "context", "label", "status", "score", "kv_bytes_stored_peak", "compression"])
        XCTAssertEqual(lines.count, 6)
        XCTAssertEqual(lines.dropFirst(2).map { $0.split(separator: " ").first.map(String.init) }, ["2", "1", "3", "4"])
        XCTAssertTrue(lines[2].contains("0.9") && lines[2].hasSuffix(" -"), lines[2])      // compression missing
        XCTAssertTrue(lines[5].contains("nan"), lines[5])
        let ascending = try ResultsReport.table(file, columns: ["run", "compression"], sortBy: "compression")
        XCTAssertEqual(ascending.split(separator: "\n").dropFirst(2).map { String($0.prefix(6)) },
                       ["000004", "000003", "000001", "000002"])     // 0.2, 0.25, 0.5, missing last
        let byLabel = try ResultsReport.table(file, columns: ["label"], sortBy: "label", descending: true)
        XCTAssertEqual(byLabel.split(separator: "\n").dropFirst(2).first, "snapkv(r=0.4)")

        // A column the file does not have (an older file, another task's metric) is left blank, not
        // an error; kvlab report notes it with the file's columns.
        let blank = try ResultsReport.table(file, columns: ["index", "bogus", "score"], sortBy: "nope")
        XCTAssertEqual(blank.split(separator: "\n").dropFirst(2).map { $0.split(separator: " ").map(String.init) },
                       [["1", "-", "0.5"], ["2", "-", "0.9"], ["3", "-", "0.1"], ["4", "-", "nan"]])
        XCTAssertEqual(try ResultsReport.csv(file, columns: ["index", "bogus"]), "index,bogus\n1,\n2,\n3,\n4,\n")
        XCTAssertEqual(ResultsReport.missingColumns(file, columns: ["index", "bogus"], sortBy: "nope"), ["bogus", "nope"])
        XCTAssertEqual(ResultsReport.missingColumns(file, columns: nil), [])

        let csv = try ResultsReport.csv(file, columns: ["index", "params", "status", "score", "compression"], sortBy: "index")
        XCTAssertEqual(csv, #"""
            index,params,status,score,compression
            1,"{""ratio"":0.1,""window"":16}",ok,0.5,0.5
            2,"{""ratio"":0.2,""window"":16}",ok,0.9,
            3,"{""ratio"":0.3,""window"":16}",ok,0.1,0.25
            4,"{""ratio"":0.4,""window"":16}","error: boom, ""quoted""",nan,0.2

            """#)
        let full = try ResultsReport.csv(file)
        XCTAssertTrue(full.hasPrefix(ResultsReport.columns(file).joined(separator: ",") + "\n"))
        XCTAssertEqual(full.split(separator: "\n").count, 5)
    }

    func testAppendsThenCompactionKeepContent() throws {
        let p = path("compact.h5")
        let store = try openStore(p)
        for i in 1 ... 30 { try store.commit(Self.run(i)) }
        let grown = try FileManager.default.attributesOfItem(atPath: p)[.size] as! NSNumber
        let before = try ResultsFile.read(p)
        XCTAssertEqual(before.runs, (1 ... 30).map { Self.run($0) })
        try store.compact()
        let compacted = try FileManager.default.attributesOfItem(atPath: p)[.size] as! NSNumber
        XCTAssertLessThan(compacted.intValue, grown.intValue)
        XCTAssertEqual(try ResultsFile.read(p), before)
        store.commitMode = .rewriteEveryCommit
        try store.commit(Self.run(31))
        store.close()
        XCTAssertEqual(try ResultsFile.read(p).runs, (1 ... 31).map { Self.run($0) })
    }
}
