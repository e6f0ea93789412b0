import ArgumentParser
import Foundation
import KVModel
import KVTensor

/// The matrix-vector products of one decode step (every matrix of the model once, as the decoder
/// groups them), without attention, on 1 and 2 threads: what the weight kernels reach.
struct WeightsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weights",
        abstract: "Decode-step matrix-vector products of a model's weights: time and GB/s per thread count (min and median of passes).",
        discussion: """
        One pass runs, per layer, the q/k/v products of one x (one parallel loop), o, gate/up (one \
        loop) and down, then the LM head — the products of one decode step, with seeded random \
        activations and no attention. Reports per thread count the fastest and the median pass, the \
        weight bytes a pass reads over its time (GB/s), and the layers / LM head split. The minimum \
        is what the kernels reach when the machine leaves them alone; compare medians only between \
        runs made side by side. Build with -c release.
        """)

    @Option(help: ArgumentHelp(ModelSourceHelp.argumentHelp))
    var model: String = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
    @Option(help: ArgumentHelp(WeightPrecision.help))
    var weights: WeightPrecision = .stored
    @Option(help: "Thread counts to measure (comma-separated).")
    var threads: String = "1,2"
    @Option(help: "Timed passes per thread count (after 3 warm-up passes).")
    var passes: Int = 30
    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    func run() throws {
        let counts = try parseIds(threads, field: "--threads")
        let lm = try loadModel(model, threads: nil, weights: weights)
        let c = lm.config, w = lm.weights
        let D = c.hiddenSize, I = c.intermediateSize, qDim = c.heads * c.headDim, kvDim = c.kvHeads * c.headDim
        var rng = SeededRandom(seed: 7)
        let xs = (0..<max(D, I)).map { _ in rng.nextNormal() }
        let y = UnsafeMutablePointer<Float>.allocate(capacity: max(c.vocabSize, I) * 3)
        defer { y.deallocate() }
        let head = w.lmHead ?? w.embedding
        func layers() {
            xs.withUnsafeBufferPointer { x in
                for l in w.layers {
                    WeightMatrix.products([MatVec(l.wq, y), MatVec(l.wk, y + qDim), MatVec(l.wv, y + qDim + kvDim)], x: x.baseAddress!)
                    WeightMatrix.products([MatVec(l.wo, y)], x: x.baseAddress!)
                    WeightMatrix.products([MatVec(l.wGate, y), MatVec(l.wUp, y + I)], x: x.baseAddress!)
                    WeightMatrix.products([MatVec(l.wDown, y)], x: x.baseAddress!)
                }
            }
        }
        func lmHead() { xs.withUnsafeBufferPointer { WeightMatrix.products([MatVec(head, y)], x: $0.baseAddress!) } }
        let layerBytes = w.layers.flatMap { [$0.wq, $0.wk, $0.wv, $0.wo, $0.wGate, $0.wUp, $0.wDown] }.map(\.byteCount).reduce(0, +)
        let headBytes = head.byteCount
        var rows: [String] = []
        if !json {
            print("model \(model), weights \(weights.rawValue) (\(w.storageSummary)); \(passes) passes after 3 warm-up")
            print("threads   pass ms (min / median)   GB/s (at min / median)   layers ms (min)   LM head ms (min)   steps/s at min")
        }
        for n in counts {
            WorkerPool.shared.configure(threads: n)
            for _ in 0..<3 { layers(); lmHead() }
            var tl: [Double] = [], th: [Double] = []
            for _ in 0..<passes {
                tl.append(clock { layers() })
                th.append(clock { lmHead() })
            }
            let total = zip(tl, th).map { $0 + $1 }
            let tMin = total.min()!, tMed = median(total)
            let bytes = Double(layerBytes + headBytes)
            if json {
                rows.append("{\"threads\": \(n), \"pass_min_s\": \(tMin), \"pass_median_s\": \(tMed), \"layers_min_s\": \(tl.min()!), " +
                            "\"lm_head_min_s\": \(th.min()!), \"bytes\": \(layerBytes + headBytes)}")
            } else {
                print(String(format: "%7d   %8.2f / %8.2f      %7.1f / %7.1f           %8.2f          %8.2f        %7.1f",
                             n, tMin * 1e3, tMed * 1e3, bytes / tMin / 1e9, bytes / tMed / 1e9, tl.min()! * 1e3, th.min()! * 1e3, 1 / tMin))
            }
        }
        // What a prefill chunk pays to dequantize every matrix into sgemm tiles (one thread).
        let all = w.matrices
        let tile = UnsafeMutablePointer<Float>.allocate(capacity: all.map(\.tileFloats).max() ?? 1)
        defer { tile.deallocate() }
        func dequantizeAll() {
            for m in all where m.type != .f32 {
                let per = max(1, m.tileFloats / m.cols)
                var r = 0
                while r < m.rows { let n = min(per, m.rows - r); m.dequantizeRows(r..<(r + n), into: tile); r += n }
            }
        }
        WorkerPool.shared.configure(threads: 1)
        dequantizeAll()
        let dq = (0..<5).map { _ in clock { dequantizeAll() } }.min()!
        let elements = all.filter { $0.type != .f32 }.map(\.elementCount).reduce(0, +)
        if json {
            print("{\"model\": \"\(model)\", \"weights\": \"\(weights.rawValue)\", \"types\": \"\(w.storageSummary)\", " +
                  "\"dequantize_all_min_s\": \(dq), \"runs\": [\(rows.joined(separator: ", "))]}")
        } else {
            print(String(format: "dequantize every packed matrix into tiles (a prefill chunk's extra work), 1 thread: %.1f ms (%.2f Gelem/s)",
                         dq * 1e3, Double(elements) / dq / 1e9))
        }
    }
}
