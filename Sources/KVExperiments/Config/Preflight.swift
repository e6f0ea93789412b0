// Everything `kvlab run` would reject, checked before any work starts (issue 16): `kvlab validate`
// runs it, and so does every sweep before it loads a weight. Errors point at the config entry.
import Foundation
import KVModel
import KVPolicies
import KVCacheCore
import KVTokenizer

public enum Preflight {
    /// What preflight learned about a model without loading its weights.
    struct ModelFacts {
        var config: ModelConfig
        var codec: TextCodec?
        var style: PromptStyle
        var kind: String   // "synthetic model", "checkpoint folder 'x'"
    }

    /// Checks models (config.json, tensor names and shapes, tokenizer, prompt style), every task
    /// point on every model it runs on (one sample generated, resource limits), every policy
    /// point against every model's shape, and the output path. Throws a `ConfigError` that names
    /// the entry; returns normally when `kvlab run` would start every run.
    public static func check(_ c: ExperimentConfig) throws {
        try checkOutput(c)
        let textTasks = c.tasks.contains { $0.kind.needsTokenizer || $0.textFile != nil }
        var facts: [String: ModelFacts] = [:]
        for (i, m) in c.models.enumerated() {
            let at = i < c.locations.models.count ? c.locations.models[i] : ConfigLocation(field: "models[\(i)]")
            do { facts[m.id] = try modelFacts(m, needsCodec: textTasks) } catch let e as ConfigError { throw e } catch {
                throw at.error(c.file, "model '\(m.id)': \(error.localizedDescription)")
            }
        }
        for (t, task) in c.tasks.enumerated() {
            let at = t < c.locations.tasks.count ? c.locations.tasks[t] : ConfigLocation(field: "tasks[\(t)]")
            for m in c.models where c.taskModels[t]?.contains(m.id) ?? true {
                try checkTask(task, on: m, facts[m.id]!, limits: c.limits, at: at, file: c.file)
            }
        }
        for (p, policy) in c.policies.enumerated() {
            let at = p < c.locations.policies.count ? c.locations.policies[p] : ConfigLocation(field: "policies[\(p)]")
            for m in c.models where c.tasks.indices.contains(where: { c.taskModels[$0]?.contains(m.id) ?? true }) {
                do { try PolicyModelCheck.check(policy, model: facts[m.id]!.config) } catch {
                    throw at.error(c.file, "\(policy.label) on model '\(m.id)': \(error.localizedDescription)")
                }
            }
        }
    }

    static func modelFacts(_ m: ModelEntry, needsCodec: Bool) throws -> ModelFacts {
        var facts: ModelFacts
        switch m.source {
        case .synthetic(let config, _, _):
            return ModelFacts(config: config, codec: nil, style: .standard, kind: "a synthetic model")
        case .checkpoint(let path):
            let ckpt = try Checkpoint(directory: path)
            try ckpt.validateTensors()
            facts = ModelFacts(config: ckpt.config, codec: nil, style: .standard, kind: "checkpoint folder '\(path)' without tokenizer.json")
        case .gguf(let path):
            let g = try GGUFCheckpoint(path: path)   // header, metadata config and tensor shapes; no weights
            facts = ModelFacts(config: g.config, codec: nil, style: .standard, kind: "GGUF file '\(path)' without tokenizer metadata")
        }
        // As the runner: a tokenizer that cannot be read fails only the text tasks (with its reason).
        if needsCodec, let path = m.source.path {
            do { (facts.codec, facts.style) = try TokenizerCodec.textSetup(model: path) } catch {
                facts.kind += " (its tokenizer could not be read: \(error.localizedDescription))"
            }
        }
        return facts
    }

    static func checkTask(_ task: TaskSpec, on m: ModelEntry, _ f: ModelFacts, limits: ResourceLimits,
                          at: ConfigLocation, file: String) throws {
        let name = task.kind.rawValue
        if (task.kind.needsTokenizer || task.textFile != nil) && f.codec == nil && task.kind != .mqar {
            throw at.error(file, "task '\(name)' needs a tokenizer (text prompts\(task.kind.needsTokenizer ? "" : ": text_file")); " +
                "model '\(m.id)' is \(f.kind). Restrict the task to models that have one: models: [...]")
        }
        // Work and memory, before anything is allocated.
        let c = f.config
        let generated = max(128, task.maxNewTokens ?? 0)   // tokens a sample may add to its context
        let tokens = task.context + generated
        let (work, o1) = task.samples.multipliedReportingOverflow(by: tokens)
        let (tokenLayers, o2) = work.multipliedReportingOverflow(by: c.layers)
        let raise = limits.explicit ? "" : " (raise it explicitly with `limits: {token_layers: N}`, docs/config.md)"
        if o1 || o2 || tokenLayers > limits.tokenLayers {
            throw at.error(file, "task '\(name)' on model '\(m.id)': \(task.samples) samples x (\(task.context) + \(generated)) tokens x " +
                "\(c.layers) layers = \(o1 || o2 ? "more than 9e18" : String(tokenLayers)) token-layers, above the limit of \(limits.tokenLayers)\(raise)")
        }
        let weights = Double(c.parameterCount) * 4
        let kv = Double(tokens) * Double(c.kvBytesPerToken(elementBytes: 4))
        let available = limits.memoryGiB.map { $0 * Double(1 << 30) } ?? Double(ProcessInfo.processInfo.physicalMemory)
        if weights + kv > available {
            func gib(_ x: Double) -> String { String(format: "%.1f GiB", x / Double(1 << 30)) }
            throw at.error(file, "task '\(name)' on model '\(m.id)' needs about \(gib(weights + kv)) (weights \(gib(weights)) + " +
                "one sample's KV cache at \(task.context) tokens \(gib(kv))); \(limits.memoryGiB == nil ? "this machine has" : "the limit is") " +
                "\(gib(available))\(limits.explicit ? "" : " (set `limits: {memory_gib: N}` to allow more)")")
        }
        // One sample, generated as the run will: prompts that do not fit, short text files,
        // vocabularies too small, tokenizers that produce foreign ids.
        do {
            _ = try TokenizerWorkLimit.check {
                try TaskFactory.sample(task, index: 0, codec: f.codec, vocabularySize: c.vocabSize,
                                       options: try SweepRunner.taskOptions(task, style: f.style, codec: f.codec), modelName: m.id)
            }
        } catch {
            throw at.error(file, "task '\(name)' on model '\(m.id)': \(error.localizedDescription)")
        }
    }

    static func checkOutput(_ c: ExperimentConfig) throws {
        // The nearest existing ancestor of the output must be a directory we may write to.
        var dir = URL(fileURLWithPath: c.output).deletingLastPathComponent()
        var isDirectory: ObjCBool = false
        while !FileManager.default.fileExists(atPath: dir.path, isDirectory: &isDirectory) {
            let up = dir.deletingLastPathComponent()
            if up.path == dir.path { break }
            dir = up
        }
        if !isDirectory.boolValue || !FileManager.default.isWritableFile(atPath: dir.path) {
            throw ConfigError(file: c.file, field: "output",
                              message: "cannot write '\(c.output)': '\(dir.path)' is not a writable directory")
        }
    }
}

/// Policy parameters checked against a model's shape (a policy alone cannot know them).
enum PolicyModelCheck {
    struct Mismatch: LocalizedError { var message: String; var errorDescription: String? { message } }

    static func check(_ spec: PolicySpec, model c: ModelConfig) throws {
        func fail(_ m: String) -> Mismatch { Mismatch(message: m) }
        if let children = spec.children {
            // The cache pools heads first (the first pooling child decides): the others see the
            // pooled shape (a Loki calibration in such a stack must match the pooled heads).
            var pooled = c
            if let n = children.lazy.compactMap({ $0.config(as: HeadPooling.Config.self)?.kvHeads }).first {
                try check(PolicySpec(HeadPooling.Config(kvHeads: n)), model: c)
                pooled = try ModelConfig(hiddenSize: c.hiddenSize, intermediateSize: c.intermediateSize, layers: c.layers,
                                         heads: c.heads, kvHeads: n, headDim: c.headDim, vocabSize: c.vocabSize)
            }
            for child in children where child.config(as: HeadPooling.Config.self) == nil {
                try check(child, model: pooled)
            }
            return
        }
        if let p = spec.config(as: HeadPooling.Config.self) {
            let n = p.kvHeads
            guard n <= c.kvHeads, c.kvHeads % n == 0 else {
                throw fail("kv_heads \(n) must divide the model's \(c.kvHeads) KV heads (pooling keeps fewer heads, never more)")
            }
        } else if let q = spec.config(as: Quest.Config.self) {
            if q.denseLayers >= c.layers { throw fail("dense_layers \(q.denseLayers) covers all \(c.layers) layers: Quest would select nothing") }
        } else if let cla = spec.config(as: CrossLayerSharing.Config.self) {
            if let map = cla.map {
                let m = try KVSharerMap.loadCached(map)
                if m.layers != c.layers { throw fail("map_file '\(map)' is for \(m.layers) layers, the model has \(c.layers)") }
            } else if case .from(let first) = cla.layers, first >= c.layers - 1 {
                throw fail("layers \(first): the model has \(c.layers) layers (0...\(c.layers - 1)), so no layer would share")
            }
        } else if let mc = spec.config(as: MiniCache.Config.self) {
            let s = mc.startLayer ?? c.layers / 2
            if s + 1 >= c.layers { throw fail("start_layer \(s) leaves no pair of layers to merge in a \(c.layers)-layer model") }
        } else if spec.config(as: Loki.Config.self) != nil, let loki = try spec.make() as? Loki {
            let shape = CacheShape(layers: c.layers, queryHeads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
            if !loki.calibration.matches(shape) {
                throw fail("the calibration is for \(loki.calibration.layers) layers x \(loki.calibration.kvHeads) KV heads x d \(loki.calibration.headDim), " +
                           "the model has \(c.layers) x \(c.kvHeads) x \(c.headDim): calibrate this model with `kvlab calibrate`")
            }
        }
    }
}
