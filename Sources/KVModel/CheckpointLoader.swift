import Foundation
import KVTensor

/// A Hugging Face checkpoint folder: config.json plus model.safetensors, or shards
/// listed by model.safetensors.index.json. Every tensor's dtype and shape is checked
/// against config.json before any conversion.
public struct Checkpoint {
    public let directory: String
    public let config: ModelConfig
    /// Tensor name -> file that holds it.
    public let files: [String: SafeTensorsFile]

    public init(directory: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) else {
            throw ModelError.fileNotFound(directory)
        }
        guard isDir.boolValue else {
            throw ModelError.unreadable(file: directory, reason: "expected a checkpoint folder (config.json + *.safetensors)")
        }
        self.directory = directory
        let dir = URL(fileURLWithPath: directory)
        config = try ModelConfig.load(huggingFace: dir.appendingPathComponent("config.json").path)
        let single = dir.appendingPathComponent("model.safetensors").path
        let index = dir.appendingPathComponent("model.safetensors.index.json").path
        if FileManager.default.fileExists(atPath: single) {
            let f = try SafeTensorsFile(path: single)
            files = f.tensors.keys.reduce(into: [:]) { $0[$1] = f }
        } else if FileManager.default.fileExists(atPath: index) {
            files = try Self.loadShards(index: index, dir: dir)
        } else {
            throw ModelError.fileNotFound("\(single) (or \(index))")
        }
    }

    static func loadShards(index: String, dir: URL) throws -> [String: SafeTensorsFile] {
        guard let data = FileManager.default.contents(atPath: index),
              let json = (try? JSONValue.parse(data))?.object else {
            throw ModelError.invalidConfig(file: index, field: "(file)", message: "not a JSON object")
        }
        guard let mapAny = json["weight_map"]?.object,
              case let map = mapAny.compactMapValues(\.string), map.count == mapAny.count else {
            throw ModelError.invalidConfig(file: index, field: "weight_map", message: "expected an object of tensor name -> file name")
        }
        var opened: [String: SafeTensorsFile] = [:]
        var out: [String: SafeTensorsFile] = [:]
        for (tensor, fileName) in map.sorted(by: { $0.key < $1.key }) {
            guard !fileName.contains("/") else {
                throw ModelError.invalidConfig(file: index, field: "weight_map.\(tensor)", message: "expected a file name in the folder, got '\(fileName)'")
            }
            let file = try opened[fileName] ?? SafeTensorsFile(path: dir.appendingPathComponent(fileName).path)
            opened[fileName] = file
            guard file.tensors[tensor] != nil else {
                throw ModelError.missingTensor(name: tensor, files: [file.path + " (listed there by \(index))"])
            }
            out[tensor] = file
        }
        return out
    }

    /// Dtypes found in the checkpoint, with tensor counts.
    public var dtypeCounts: [StorageDType: Int] {
        files.reduce(into: [:]) { acc, kv in if let t = kv.value.tensors[kv.key] { acc[t.dtype, default: 0] += 1 } }
    }

    /// Loads and converts every weight to Float32, checking shapes against config.json (first,
    /// `validateTensors`) and every value for NaN and infinity (after).
    public func loadWeights() throws -> ModelWeights {
        try validateTensors()
        let weights = try ModelWeights.assemble(config) { name in try files[name]!.floats(name) }
        try weights.checkFinite { files[$0]?.path ?? directory }
        return weights
    }

    /// Checks, without reading any weight, that every tensor config.json implies is there with its
    /// shape, and that the files hold no layer beyond `num_hidden_layers` (`kvlab validate` runs it).
    public func validateTensors() throws {
        // Check everything, in a fixed order, before converting anything.
        for (name, shape) in ModelWeights.expectedTensors(config) {
            guard let file = files[name], let info = file.tensors[name] else {
                let searched = Set(files.values.map(\.path)).sorted()
                throw ModelError.missingTensor(name: name, files: searched.isEmpty ? [directory] : searched)
            }
            guard info.shape == shape else {
                throw ModelError.shapeMismatch(file: file.path, tensor: name, expected: shape, found: info.shape)
            }
        }
        // Tensors named for layers the config does not have: config.json and the weights disagree.
        let expected = Set(ModelWeights.expectedTensors(config).map(\.name))
        if let extra = files.keys.sorted().first(where: { !expected.contains($0) && Self.layerIndex($0).map { $0 >= config.layers } == true }) {
            throw ModelError.invalidConfig(file: URL(fileURLWithPath: directory).appendingPathComponent("config.json").path,
                field: "num_hidden_layers",
                message: "is \(config.layers) but the weights have '\(extra)' (\(Self.layerCount(files.keys)) layers in \(files[extra]!.path))")
        }
    }

    /// N of a "model.layers.N.<...>" tensor name.
    static func layerIndex(_ name: String) -> Int? {
        let prefix = "model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        return Int(name.dropFirst(prefix.count).prefix { $0.isNumber })
    }

    static func layerCount<S: Sequence>(_ names: S) -> Int where S.Element == String {
        (names.compactMap(layerIndex).max() ?? -1) + 1
    }
}
