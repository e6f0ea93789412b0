// Fuzz target: an experiment config (YAML bounds, schema, sweeps and zip, task and policy
// parameters), then the expanded grid and its hash.
import Foundation
import KVExperiments

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzYAMLConfig(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let config = try? ExperimentConfig.parse(text, file: "fuzz.yaml") else { return 0 }
    let grid = config.grid
    precondition(grid.count == Set(grid.map(\.index)).count)
    _ = config.gridHash
    return 0
}
