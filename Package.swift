// swift-tools-version:6.0
// KVLab: a KV-cache compression research harness.
import PackageDescription

// Real FMA and hardware fp16 conversion need an explicit CPU target on x86-64
// (without it Swift emits neither). Other architectures keep the defaults.
#if arch(x86_64)
let cpuFlags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let cCpuFlags: [CSetting] = [.unsafeFlags(["-march=haswell"])]
#else
let cpuFlags: [SwiftSetting] = []
let cCpuFlags: [CSetting] = []
#endif
let swiftSettings: [SwiftSetting] = cpuFlags + [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]
// KVGGUF holds the weight kernels (block decoders, matrix-vector products) that every forward pass
// runs: optimized in debug builds too, so the debug test suite runs real-model checks in seconds.
let kernelSettings: [SwiftSetting] = swiftSettings + [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "KVLab",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "kvlab", targets: ["kvlab"]),
        .library(name: "KVLabCore", targets: ["KVTensor", "KVModel", "KVCacheCore", "KVPolicies", "KVHDF5", "KVTokenizer", "KVGGUF", "KVExperiments"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries: OpenBLAS (cblas + LAPACK) and HDF5 (serial), each behind a shim header.
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]),
        .systemLibrary(name: "CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"]), .brew(["hdf5"])]),
        // Header-only: a software-prefetch hint for the gathered attention kernels.
        .systemLibrary(name: "CPrefetch"),
        // Header-only: C11-style atomics and a spin hint for KVTensor's worker pool.
        .systemLibrary(name: "CAtomic"),
        .target(name: "KVTensor", dependencies: ["CBLAS", "CAtomic"], swiftSettings: swiftSettings),
        .target(name: "KVHDF5", dependencies: ["CHDF5"], swiftSettings: swiftSettings),
        .target(name: "KVGGUF", swiftSettings: kernelSettings),
        .target(name: "KVTokenizer", dependencies: ["KVGGUF"], swiftSettings: swiftSettings),
        .target(name: "KVModel", dependencies: ["KVTensor", "KVCacheCore", "KVGGUF"], swiftSettings: swiftSettings),
        .target(name: "KVCacheCore", dependencies: ["KVTensor", "CPrefetch"], swiftSettings: swiftSettings),
        .target(name: "KVPolicies", dependencies: ["KVCacheCore", "KVTensor", "KVHDF5"], swiftSettings: swiftSettings),
        .target(name: "KVExperiments", dependencies: [
            "KVTensor", "KVModel", "KVCacheCore", "KVPolicies", "KVHDF5", "KVTokenizer",
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: swiftSettings),
        .executableTarget(name: "kvlab", dependencies: [
            "KVTensor", "KVModel", "KVCacheCore", "KVPolicies", "KVHDF5", "KVTokenizer", "KVExperiments",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: swiftSettings),
        // Shared by the test targets (not a product): the policy harness and fixtures.
        .target(name: "KVTestSupport", dependencies: ["KVCacheCore", "KVModel", "KVPolicies", "KVTensor", "KVGGUF"],
                path: "Tests/KVTestSupport", swiftSettings: cpuFlags),
        .testTarget(name: "KVTensorTests", dependencies: ["KVTensor"], swiftSettings: cpuFlags),
        .testTarget(name: "KVPoliciesTests", dependencies: ["KVPolicies", "KVCacheCore", "KVModel", "KVTestSupport", "KVHDF5"],
                    swiftSettings: cpuFlags),
        .testTarget(name: "KVModelTests", dependencies: ["KVModel", "KVCacheCore", "KVHDF5", "KVGGUF", "KVTestSupport"],
                    exclude: ["Fixtures"], swiftSettings: cpuFlags),
        .testTarget(name: "KVExperimentsTests", dependencies: ["KVExperiments", "KVModel", "KVPolicies", "KVHDF5"],
                    swiftSettings: cpuFlags),
        .testTarget(name: "KVTokenizerTests", dependencies: ["KVTokenizer", "KVTestSupport"], exclude: ["Fixtures"], swiftSettings: cpuFlags),
        .testTarget(name: "KVGGUFTests", dependencies: ["KVGGUF", "KVTestSupport"], exclude: ["Fixtures"], swiftSettings: cpuFlags),
        .testTarget(name: "KVHDF5Tests", dependencies: ["KVHDF5"], swiftSettings: cpuFlags),
        .testTarget(name: "KVCacheTests", dependencies: ["KVCacheCore", "KVModel", "KVPolicies", "KVTestSupport"],
                    exclude: ["Fixtures"], swiftSettings: cpuFlags),
    ],
    swiftLanguageModes: [.v5]
)
