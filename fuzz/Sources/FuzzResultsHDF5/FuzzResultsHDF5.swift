// Fuzz target: a results file read back as `kvlab compare`/`merge` read it (integrity stamp
// required, HDF5, the KVLab layout), then the report table and a self-comparison. Run as shipped,
// a damaged or unstamped file is refused before HDF5 parses it; with KVLAB_IGNORE_CHECKSUM=1 in
// the environment every input reaches HDF5 (as an unstamped file reaches it in `kvlab report`).
import Foundation
import FuzzSupport
import KVExperiments

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzResultsHDF5(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = FuzzSupport.file("results.h5", data, size)
    guard let file = try? ResultsFile.read(path, requireStamp: true) else { return 0 }
    _ = try? ResultsReport.table(file)
    _ = try? ResultsReport.csv(file, columns: nil, sortBy: nil, descending: false)
    _ = ResultsCompare.compare(new: file, baseline: file).text()
    return 0
}
