// swift-tools-version: 6.1
//
// udpd: a configuration-driven supervisor of UDP and TCP listeners whose UDP replies always leave from the
// address the request was sent to.
//
// The targets are the architecture, lowest layer first:
//
//   CYAML, CUDPD        C: libyaml, and the macros and structs Swift cannot express (no logic)
//   UDPDConfig          YAML -> typed model -> validation; every error carries file, line and column
//   UDPDTransport       sockets, the one syscall wrapper, pktinfo receive/send, bind policies, UDP workers
//   UDPDServices        the handlers (echo, discard, ...) behind UDP and TCP listeners
//   UDPDControl         the control protocol shared by udpd and udpctl, its server and client
//   UDPDSupervisor      listener groups, reload diff, generations, lifecycle
//   udpd, udpctl        two thin executables
import PackageDescription

// MARK: - Shared settings

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let nioHTTP1 = Target.Dependency.product(name: "NIOHTTP1", package: "swift-nio")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")
let serviceLifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let unixSignals = Target.Dependency.product(name: "UnixSignals", package: "swift-service-lifecycle")

// MARK: - Package

let package = Package(
    name: "udpd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "udpd", targets: ["udpd"]),
        .executable(name: "udpctl", targets: ["udpctl"]),
        // For Fuzz/Package.swift, which builds the libFuzzer drivers around these entry points.
        .library(name: "UDPDFuzzEntryPoints", targets: ["UDPDFuzzEntryPoints"]),
        .executable(name: "udpd-bench", targets: ["udpd-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        // MARK: C
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"]), .brew(["libyaml"])]
        ),
        .target(
            name: "CUDPD",
            cSettings: [.define("_GNU_SOURCE")]
        ),

        // MARK: Libraries
        .target(
            name: "UDPDConfig",
            dependencies: ["CYAML"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDTransport",
            dependencies: ["CUDPD"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDServices",
            dependencies: ["UDPDConfig", "UDPDTransport", nioCore, nioPosix, logging],
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDControl",
            dependencies: ["UDPDTransport", nioCore, nioPosix, nioHTTP1, logging],
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDSupervisor",
            dependencies: [
                "UDPDConfig", "UDPDTransport", "UDPDServices", "UDPDControl",
                nioCore, nioPosix, logging, serviceLifecycle, unixSignals,
            ],
            swiftSettings: strictSwift
        ),

        // MARK: Fuzzing (the drivers live in Fuzz/, outside `swift test`)
        .target(
            name: "UDPDFuzzEntryPoints",
            dependencies: ["UDPDConfig", "UDPDControl", "UDPDServices"],
            swiftSettings: strictSwift
        ),

        // MARK: Executables
        .executableTarget(
            name: "udpd",
            dependencies: ["UDPDSupervisor", "UDPDConfig", argumentParser, logging],
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "udpctl",
            dependencies: ["UDPDControl", "UDPDConfig", argumentParser],
            swiftSettings: strictSwift
        ),

        // MARK: Benchmarks
        // The load generator and timer behind Benchmarks/run.sh; never part of the tests (see BENCHMARKS.md).
        .executableTarget(
            name: "udpd-bench",
            dependencies: ["CUDPD", "UDPDTransport", "UDPDControl", argumentParser],
            swiftSettings: strictSwift
        ),

        // MARK: Tests
        .target(
            name: "UDPDTestSupport",
            dependencies: ["UDPDTransport", "UDPDControl"],
            path: "Tests/UDPDTestSupport",
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "udpd-testclient",
            dependencies: ["UDPDTransport", "UDPDTestSupport"],
            path: "Tests/UDPDTestClient",
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "UDPDConfigTests",
            dependencies: ["UDPDConfig"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "UDPDTransportTests",
            dependencies: ["UDPDTransport", "UDPDTestSupport"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "UDPDServicesTests",
            dependencies: ["UDPDServices", "UDPDConfig", "UDPDTransport", "UDPDFuzzEntryPoints"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "UDPDControlTests",
            dependencies: ["UDPDControl", "UDPDTransport", "UDPDTestSupport"],
            swiftSettings: strictSwift
        ),
        .testTarget(
            name: "UDPDEndToEndTests",
            dependencies: ["UDPDTransport", "UDPDControl", "UDPDTestSupport", "udpd", "udpctl", "udpd-testclient"],
            swiftSettings: strictSwift
        ),
    ]
)
