// swift-tools-version:5.4
//
// libFuzzer drivers for udpd's parsers. Kept out of the main package so that `swift test` never builds them;
// build and run them with `Fuzz/run.sh [seconds]` (it passes -sanitize=fuzzer,address).
import PackageDescription

let entryPoints = Target.Dependency.product(name: "UDPDFuzzEntryPoints", package: "udpd")

let package = Package(
    name: "udpd-fuzz",
    dependencies: [.package(name: "udpd", path: "..")],
    targets: [
        .executableTarget(name: "FuzzConfig", dependencies: [entryPoints]),
        .executableTarget(name: "FuzzControlRequest", dependencies: [entryPoints]),
        .executableTarget(name: "FuzzKerberosFrame", dependencies: [entryPoints]),
        .executableTarget(name: "FuzzDER", dependencies: [entryPoints]),
    ]
)
