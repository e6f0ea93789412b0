import KVCacheCore

/// Records what a run's attention did at each decode step, for fidelity metrics.
/// The full-cache reference keeps probabilities per original position; a policy run keeps
/// which positions each KV head attended. Both keep each layer's attention output.
final class RecordingProbe: AttentionProbe {
    let shape: CacheShape
    let keepProbabilities: Bool
    /// [step][layer][queryHead] -> probability per original position (reference runs).
    private(set) var probabilities: [[[[Float]]]] = []
    /// [step][layer][kvHead] -> attended original positions (policy runs).
    private(set) var attended: [[[[Int32]]]] = []
    /// [step][layer] -> attention output [H * d].
    private(set) var outputs: [[[Float]]] = []
    private var recording = false

    init(shape: CacheShape, keepProbabilities: Bool) {
        self.shape = shape
        self.keepProbabilities = keepProbabilities
    }

    /// Starts a new decode step; recording is on only between `begin` and the step's end.
    func begin() {
        recording = true
        let L = shape.layers
        probabilities.append(keepProbabilities ? Array(repeating: Array(repeating: [], count: shape.queryHeads), count: L) : [])
        attended.append(Array(repeating: Array(repeating: [], count: shape.kvHeads), count: L))
        outputs.append(Array(repeating: [], count: L))
    }
    func end() { recording = false }

    func decodeProbabilities(layer: Int, head: Int, store: HeadStore, indices: [Int32]?,
                             probs: UnsafePointer<Float>, count n: Int) {
        guard recording else { return }
        let s = probabilities.count - 1, g = shape.groupSize
        let positions: [Int32] = (0..<n).map { j in store.positions[indices.map { Int($0[j]) } ?? j] }
        attended[s][layer][head] = positions
        guard keepProbabilities else { return }
        let maxPos = Int(positions.max() ?? 0)
        for m in 0..<g {
            var dense = [Float](repeating: 0, count: maxPos + 1)
            for j in 0..<n { dense[Int(positions[j])] = probs[m * n + j] }
            probabilities[s][layer][head * g + m] = dense
        }
    }

    func attentionOutput(layer: Int, phase: Phase, rows: Int, output: UnsafePointer<Float>) {
        guard recording, phase == .decode, rows == 1 else { return }
        outputs[outputs.count - 1][layer] = Array(UnsafeBufferPointer(start: output, count: shape.queryHeads * shape.headDim))
    }
}
