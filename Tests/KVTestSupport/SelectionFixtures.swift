import KVCacheCore
import KVModel
import KVPolicies
import KVTensor

/// Fixtures of the selection tests and the policy contract tests.
public enum SelectionFixtures {
    /// Loki calibration of a model, fitted on seeded random tokens through the cache.
    public static func calibration(_ m: LlamaModel, tokens n: Int = 256, seed: UInt64 = 11) -> LokiCalibration {
        let recorder = KeyCovarianceRecorder()
        let cache = m.makeCache(policy: recorder)
        var rng = SeededRandom(seed: seed)
        let ids = (0..<n).map { _ in Int(rng.next() % UInt64(m.config.vocabSize)) }
        _ = m.forward(ids, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        return try! LokiCalibration.fit(recorder)
    }

    /// SVD KV-head calibration of a model to `kvHeads` stored heads, fitted on seeded random tokens.
    public static func svdCalibration(_ m: LlamaModel, kvHeads: Int, tokens n: Int = 256, seed: UInt64 = 11) -> SVDHeadsCalibration {
        let recorder = GroupMomentRecorder(storedKVHeads: kvHeads)
        let cache = m.makeCache(policy: recorder)
        var rng = SeededRandom(seed: seed)
        let ids = (0..<n).map { _ in Int(rng.next() % UInt64(m.config.vocabSize)) }
        _ = m.forward(ids, startPosition: 0, cache: cache, phase: .prefill, logits: .none)
        return try! SVDHeadsCalibration.fit(recorder)
    }

    /// A store of `n` random keys/values (uniform in [-1, 1)) of dimension d.
    public static func randomStore(n: Int, d: Int, seed: UInt64) -> HeadStore {
        var rng = SeededRandom(seed: seed)
        let st = HeadStore(headDim: d)
        for t in 0..<n {
            let k = (0..<d).map { _ in rng.nextUniform() * 2 - 1 }, v = (0..<d).map { _ in rng.nextUniform() * 2 - 1 }
            st.append(key: k, value: v, position: t)
        }
        return st
    }

    public static func random(_ n: Int, seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed)
        return (0..<n).map { _ in rng.nextUniform() * 2 - 1 }
    }

    /// A random orthonormal d x d matrix (eigenvectors of a random symmetric matrix).
    public static func randomBasis(d: Int, seed: UInt64) -> [Float] {
        let a = random(d * d, seed: seed).map(Double.init)
        var s = [Double](repeating: 0, count: d * d)
        for i in 0..<d { for j in 0..<d { s[i * d + j] = a[i * d + j] + a[j * d + i] } }
        return try! LAPACK.symmetricEigen(s, n: d).vectors.map(Float.init)
    }
}

