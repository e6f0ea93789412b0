// Fuzz target: a Hugging Face config.json read as a model config (types, ranges, rope scaling),
// then what the loader derives from it (tensor list, parameter and KV byte counts, RoPE tables).
import Foundation
import FuzzSupport
import KVModel

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigJSON(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let path = FuzzSupport.file("config.json", data, size)
    guard let config = try? ModelConfig.load(huggingFace: path) else { return 0 }
    let tensors = ModelWeights.expectedTensors(config)
    precondition(!tensors.isEmpty)
    _ = config.parameterCount
    _ = config.kvBytesPerToken()
    let rope = config.rotary
    precondition(rope.invFreq.count == config.headDim / 2)
    return 0
}
