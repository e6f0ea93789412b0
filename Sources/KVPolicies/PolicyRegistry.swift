// Support file, not a policy: the list of registered policies (kvpress's tests/default_presses.py
// plays this part there). Each policy's paper and reference repository are named on its own file.
import KVCacheCore

/// Every policy configs, `--policy` and the docs know, in documentation order. Adding a policy is
/// its own file (a class, its `Config` with the descriptor) plus one line here.
public enum PolicyRegistry {
    public static let all: [AnyPolicyDescriptor] = [
        FullCacheConfig.descriptor,
        StreamingLLM.Config.descriptor,
        H2O.Config.descriptor,
        SnapKV.Config.descriptor,
        PyramidKV.Config.descriptor,
        TOVA.Config.descriptor,
        Knorm.Config.descriptor,
        Quest.Config.descriptor,
        Loki.Config.descriptor,
        OracleTopK.Config.descriptor,
        HeadPooling.Config.descriptor,
        SVDHeads.Config.descriptor,
        CrossLayerSharing.Config.descriptor,
        KIVI.Config.descriptor,
        MiniCache.Config.descriptor,
        RandomEviction.Config.descriptor,
        DuoAttention.Config.descriptor,
        NAtS.Config.descriptor,
        QAdA.Config.descriptor,
    ]

    /// The registered descriptor named `name` (as configs write it).
    public static func descriptor(named name: String) -> AnyPolicyDescriptor? { all.first { $0.name == name } }

    /// Registered names, and `stack` (what configs and the command line accept).
    public static var names: [String] { all.map(\.name) + ["stack"] }
}

/// The full cache as a registered policy: no parameters.
public struct FullCacheConfig: PolicyConfig {
    public init() {}
    public static let descriptor = PolicyDescriptor<FullCacheConfig>(
        name: "full", family: .full, summary: "keeps and reads every token: the reference every policy is compared with",
        defaults: FullCacheConfig(), parameters: [], sample: "", examples: { _, _ in [FullCacheConfig()] })
    public func make() throws -> CachePolicy { FullCachePolicy() }
    /// Its dense prefill is the one a sweep records and shares.
    public var prefillSharing: PrefillSharing { .whole }
    public var cost: PolicyCost { .reuse }
}
