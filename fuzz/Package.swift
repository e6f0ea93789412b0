// swift-tools-version:6.0
// libFuzzer targets for KVLab's parsers of untrusted input (issue 16). A separate package, so
// `swift build` / `swift test` of KVLab never need fuzzing flags. Build and run with
// `bash scripts/fuzz.sh` (docs/robustness.md), which uses:
//   swift build --package-path fuzz -c debug --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer -Xswiftc -O
import PackageDescription

let targets = ["FuzzSafeTensors", "FuzzGGUF", "FuzzTokenizer", "FuzzConfigJSON", "FuzzYAMLConfig", "FuzzResultsHDF5"]

let package = Package(
    name: "KVLabFuzz",
    platforms: [.macOS(.v13)],
    products: targets.map { .executable(name: $0, targets: [$0]) },
    dependencies: [.package(name: "KVLab", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
    ] + targets.map {
        .executableTarget(name: $0, dependencies: ["FuzzSupport", .product(name: "KVLabCore", package: "KVLab")])
    },
    swiftLanguageModes: [.v5]
)
