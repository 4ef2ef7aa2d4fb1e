import Foundation
import Testing
import UDPDControl

/// `udpctl` next to the test bundle, if `swift build` made it.
let udpctlBinary: String? = {
    let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    let candidates = [
        executable.deletingLastPathComponent(),
        executable.deletingLastPathComponent().deletingLastPathComponent(),
        Bundle.main.bundleURL,
        Bundle.main.bundleURL.deletingLastPathComponent(),
    ]
    return candidates.map { $0.appendingPathComponent("udpctl").path }
        .first { FileManager.default.isExecutableFile(atPath: $0) }
}()

/// Runs the built `udpctl` (from the same build directory as the tests) against a test server.
@Suite("The udpctl binary", .enabled(if: udpctlBinary != nil, "udpctl is not built next to the tests"))
struct UDPCtlBinaryTests {
    /// A handler whose reload is rejected with two errors.
    @Sendable
    static func rejectingHandler(_ request: ControlRequest, _ peer: ControlPeer) async -> ControlResponse {
        guard request.command == .reload else { return await sampleHandler(request, peer) }
        let errors = ["services.yaml:7:11: error: unknown handler \"ech\"", "services.yaml:9:5: error: bad port"]
        return ControlResponse(ok: false, reload: ReloadReport(ok: false, generation: 3, errors: errors))
    }

    private struct Outcome: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    private static func run(_ arguments: [String]) async throws -> Outcome {
        let binary = try #require(udpctlBinary)
        return try await onThread {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
            let output = Pipe()
            let errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            let stdout = output.fileHandleForReading.readDataToEndOfFile()
            let stderr = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return Outcome(
                status: process.terminationStatus,
                stdout: String(decoding: stdout, as: UTF8.self),
                stderr: String(decoding: stderr, as: UTF8.self)
            )
        }
    }

    @Test("status, status --json and metrics exit 0; -s works before and after the subcommand")
    func statusAndMetrics() async throws {
        try await withControlServer { path in
            let table = try await Self.run(["-s", path, "status"])
            #expect(table.status == 0)
            #expect(table.stdout == StatusTable.render(sampleReport))

            let json = try await Self.run(["status", "-s", path, "--json"])
            #expect(json.status == 0)
            #expect(json.stdout.contains("\"last_reload\" : null"))
            let decoded = try JSONDecoder().decode(StatusReport.self, from: Data(json.stdout.utf8))
            #expect(decoded == sampleReport)

            let metrics = try await Self.run(["-s", path, "metrics"])
            #expect(metrics.status == 0)
            #expect(metrics.stdout == "udpd_generation 3\n")
        }
    }

    @Test("reload exits 0 when applied and 1 when rejected, printing the errors to stderr")
    func reload() async throws {
        try await withControlServer { path in
            let applied = try await Self.run(["-s", path, "reload"])
            #expect(applied.status == 0)
            #expect(applied.stdout == "reload applied: generation 4\nkept 0 listeners\n")
        }
        try await withControlServer(handler: Self.rejectingHandler) { path in
            let rejected = try await Self.run(["reload", "--socket", path])
            #expect(rejected.status == 1)
            #expect(rejected.stdout.isEmpty)
            #expect(
                rejected.stderr == """
                    reload rejected; the old configuration keeps running:
                    services.yaml:7:11: error: unknown handler "ech"
                    services.yaml:9:5: error: bad port

                    """
            )
        }
    }

    @Test("no daemon: exit 2 naming the socket", arguments: [["status"], ["reload"], ["metrics"]])
    func unreachable(command: [String]) async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("none.sock")
        let outcome = try await Self.run(["-s", path] + command)
        #expect(outcome.status == 2)
        #expect(outcome.stderr == "udpctl: no daemon is listening on \(path): No such file or directory\n")
    }
}
