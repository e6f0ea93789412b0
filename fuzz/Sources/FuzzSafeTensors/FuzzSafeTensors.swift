// Fuzz target: the safetensors reader (header length, JSON header, dtypes, shapes, offsets),
// then every tensor converted to Float32.
import Foundation
import FuzzSupport
import KVModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSafeTensors(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = FuzzSupport.file("model.safetensors", data, size)
    guard let file = try? SafeTensorsFile(path: path) else { return 0 }
    for name in file.tensors.keys.sorted() {
        guard let values = try? file.floats(name) else { continue }
        precondition(values.count == file.tensors[name]!.elementCount)
    }
    return 0
}
