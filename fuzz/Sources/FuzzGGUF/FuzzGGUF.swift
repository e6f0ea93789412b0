// Fuzz target: the GGUF container parser (header, metadata of every type, tensor infos, block
// geometry, alignment, data bounds), then every tensor's data touched at both ends.
import Foundation
import FuzzSupport
import KVGGUF

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = FuzzSupport.file("model.gguf", data, size)
    guard let file = try? GGUFFile(path: path) else { return 0 }
    var sum = 0
    for (key, value) in file.metadata {
        sum &+= key.utf8.count
        _ = value.string; _ = value.int; _ = value.double; _ = value.strings
    }
    for info in file.tensors {
        let bytes = file.data(info)
        precondition(bytes.count == info.byteCount)
        if let first = bytes.first, let last = bytes.last { sum &+= Int(first) &+ Int(last) }
        _ = file.tensor(info.name)
    }
    return sum == Int.min ? 1 : 0
}
