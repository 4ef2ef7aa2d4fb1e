// swift-tools-version: 6.1
//
// udpd: a configuration-driven supervisor of UDP and TCP listeners whose UDP replies always leave from the
// address the request was sent to.
//
// The targets are the architecture, lowest layer first:
//
//   CYAML, CUDPD        C: libyaml, and the macros and structs Swift cannot express (no logic)
//   UDPDConfig          YAML -> typed model -> validation; every error carries file, line and column
//   UDPDKerberos        a bounded ASN.1 DER reader and encoder, and the Kerberos messages udpd builds or reads
//   UDPDTransport       sockets, the one syscall wrapper, pktinfo receive/send, bind policies, UDP workers
//   UDPDServices        the handlers (echo, discard, ...) behind UDP and TCP listeners
//   UDPDControl         the control protocol shared by udpd and udpctl, its server and client
//   UDPDSupervisor      listener groups, reload diff, generations, lifecycle
//   udpd, udpctl        two thin executables
import PackageDescription

#if canImport(Glibc)
import Glibc
#endif

// MARK: - Shared settings

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

/// How the installed executables (udpd, udpctl) are linked in release builds on Linux, to keep the pages an idle
/// daemon maps few (measured with `udpd-bench control`'s idle RSS; see BENCHMARKS.md):
/// - lld, the linker shipped with the Swift toolchain, because it can pack relative relocations;
/// - `--no-export-dynamic`: `--static-swift-stdlib` (how `make` and Benchmarks/run.sh build) exports every symbol
///   of the program, 1.3 MB of symbol tables that the dynamic loader reads at start and nothing looks up;
/// - `-z pack-relative-relocs` (DT_RELR) where glibc loads it (2.36 and later): the ~57,000 relative relocations of
///   Swift metadata take 11 KB instead of 1.3 MB, all of which the loader reads at every start;
/// - libstdc++ linked in too when the Swift runtime is and GCC's libstdc++.a is installed (GCC's -static-libstdc++;
///   see Linker/static-libstdc++): the runtime uses little of it, and loading the shared library costs about 1 MB of
///   resident pages, most of them its symbol tables.
/// Debug builds (`swift build`, `swift test`) link as SwiftPM does by default.
let releaseLinking: [LinkerSetting] = {
    var flags = ["-use-ld=lld", "-Xlinker", "--no-export-dynamic"]
    if glibcLoadsPackedRelocations() {
        flags += ["-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"]
    }
    if hasStaticLibstdcxx() {
        flags += ["-L", Context.packageDirectory + "/Linker/static-libstdc++"]
    }
    return [.unsafeFlags(flags, .when(platforms: [.linux], configuration: .release))]
}()

/// Whether this machine's glibc loads DT_RELR (2.36 and later); an older one refuses such a binary.
func glibcLoadsPackedRelocations() -> Bool {
    #if canImport(Glibc)
    var buffer = [CChar](repeating: 0, count: 64)
    guard confstr(Int32(_CS_GNU_LIBC_VERSION), &buffer, buffer.count) > 0 else { return false }
    let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }  // "glibc 2.36"
    let version = text.split(separator: " ").last?.split(separator: ".").compactMap { Int($0) } ?? []
    return version.count >= 2 && (version[0], version[1]) >= (2, 36)
    #else
    return false
    #endif
}

/// Whether GCC's static libstdc++ is installed (Debian's libstdc++-N-dev, which the Swift toolchain needs; Fedora's
/// libstdc++-static).
func hasStaticLibstdcxx() -> Bool {
    #if canImport(Glibc)
    var found = glob_t()
    defer { globfree(&found) }
    return glob("/usr/lib/gcc/*/*/libstdc++.a", 0, nil, &found) == 0 && found.gl_pathc > 0
    #else
    return false
    #endif
}

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
            name: "UDPDKerberos",
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDTransport",
            dependencies: ["CUDPD"],
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDServices",
            dependencies: ["UDPDConfig", "UDPDKerberos", "UDPDTransport", nioCore, nioPosix, logging],
            swiftSettings: strictSwift
        ),
        .target(
            name: "UDPDControl",
            dependencies: ["UDPDConfig", "UDPDTransport", nioCore, nioPosix, nioHTTP1, logging],
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
            dependencies: ["UDPDConfig", "UDPDControl", "UDPDKerberos", "UDPDServices"],
            swiftSettings: strictSwift
        ),

        // MARK: Executables
        .executableTarget(
            name: "udpd",
            dependencies: ["UDPDSupervisor", "UDPDConfig", argumentParser, logging],
            swiftSettings: strictSwift,
            linkerSettings: releaseLinking
        ),
        .executableTarget(
            name: "udpctl",
            dependencies: ["UDPDControl", "UDPDConfig", argumentParser],
            swiftSettings: strictSwift,
            linkerSettings: releaseLinking
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
            name: "UDPDKerberosTests",
            dependencies: ["UDPDKerberos"],
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
            dependencies: [
                "UDPDConfig", "UDPDKerberos", "UDPDTransport", "UDPDServices", "UDPDControl", "UDPDTestSupport", "udpd",
                "udpctl", "udpd-testclient",
            ],
            swiftSettings: strictSwift
        ),
    ]
)
