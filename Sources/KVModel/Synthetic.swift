import KVTensor

extension ModelWeights {
    /// Seeded random weights for any Llama-family shape: N(0, std^2) matrices, unit norms,
    /// N(0, std^2) biases where the config has them. Same seed, same weights, on every platform.
    public static func synthetic(_ c: ModelConfig, seed: UInt64, std: Float = 0.02) -> ModelWeights {
        let shapes = Dictionary(uniqueKeysWithValues: expectedTensors(c).map { ($0.name, $0.shape) })
        let names = expectedTensors(c).map(\.name)
        let salt = Dictionary(uniqueKeysWithValues: names.enumerated().map { ($1, UInt64($0 + 1)) })
        // Each tensor draws from its own stream, so adding a tensor never shifts the others.
        return try! assemble(c) { name in
            let n = shapes[name]!.reduce(1, *)
            if name.hasSuffix("norm.weight") { return [Float](repeating: 1, count: n) }
            var rng = SeededRandom(seed: seed).fork(salt[name]!)
            return (0..<n).map { _ in rng.nextNormal() * std }
        }
    }
}
