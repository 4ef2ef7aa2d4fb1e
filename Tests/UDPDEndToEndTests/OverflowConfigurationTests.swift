import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// The configurations of issue 12 finding 1: each passed `--check` and `udpctl reload`, then killed udpd with an
/// arithmetic trap on the first datagram or connection (or at start). Now each is refused with its position, by
/// `--check` and by a reload, and the daemon that refused it goes on serving.
@Suite("configurations that crashed udpd", .serialized)
struct OverflowConfigurationTests {
    /// The line of each case, the key at fault, and where its value stands in ``config(_:ports:)``.
    static let cases: [(name: String, lines: String, key: String, line: Int, column: Int)] = [
        ("forward timeout", "timeout: 20000000000s", "timeout", 12, 14),
        ("rate-limit burst", "rate-limit: {per-source: 100/s, burst: 20000000000000}", "burst", 17, 44),
        ("idle-timeout", "idle-timeout: 2562048h", "idle-timeout", 6, 19),
        ("max-sessions", "max-sessions: 4611686018427387904", "max-sessions", 12, 19),
        ("workers", "workers: 9223372036854775807", "workers", 17, 14),
    ]

    /// An echo service over TCP on `ports[0]`, a forward on `ports[1]` to an upstream on `ports[2]` (another
    /// process: a forward into udpd's own listener is no valid configuration), and an echo over UDP on `ports[3]`;
    /// `extra` is the last line of the service that takes its key, every service ending with such a line (a comment
    /// when unused) so that positions stay put.
    static func config(_ extra: (key: String, lines: String)?, ports: [UInt16]) -> String {
        func line(for keys: Set<String>) -> String {
            guard let extra, keys.contains(extra.key) else { return "# nothing more" }
            return extra.lines
        }
        return """
            services:
              echo-tcp:
                handler: echo
                tcp: \(ports[0])
                bind: [127.0.0.1]
                \(line(for: ["idle-timeout"]))
              fwd:
                handler: forward
                udp: \(ports[1])
                bind: [127.0.0.1]
                upstream: 127.0.0.1:\(ports[2])
                \(line(for: ["timeout", "max-sessions"]))
              limited:
                handler: echo
                udp: \(ports[3])
                bind: [127.0.0.1]
                \(line(for: ["burst", "workers"]))

            """
    }

    /// The forward's upstream: an echo server of its own.
    static func upstream(_ ports: [UInt16]) throws -> UDPDProcess {
        let upstream = try UDPDProcess(
            config: "services:\n  up: {handler: echo, udp: \(ports[2]), bind: [127.0.0.1]}\n"
        )
        try upstream.waitUntilReady()
        return upstream
    }

    @Test("--check refuses each with FILE:LINE:COL, the key, the value and the range", arguments: cases)
    func checkRefuses(_ example: (name: String, lines: String, key: String, line: Int, column: Int)) throws {
        let directory = try TemporaryDirectory()
        let ports = try freePorts(4)
        let path = try directory.write("c.yaml", Self.config((example.key, example.lines), ports: ports))
        let result = try runCommand(BuiltProducts.path("udpd"), ["-c", path, "--check"])
        #expect(result.status == 1, "\(example.name) passed --check:\n\(result.standardOutput)")
        let lines = result.standardError.split(separator: "\n").map(String.init)
        #expect(lines.count == 1, "\(result.standardError)")
        let prefix = "\(path):\(example.line):\(example.column): error: '\(example.key)' must be from "
        #expect(lines.first?.hasPrefix(prefix) == true, "expected \(prefix)...; got \(result.standardError)")
        #expect(lines.first?.contains(" to ") == true && lines.first?.contains("found '") == true)
    }

    /// The daemon runs a valid file; each bad file is rejected by a reload (its position in the report), and after
    /// all of them traffic of every kind that would have trapped is still served.
    @Test("a reload refuses each, and the daemon keeps serving the traffic that used to trap")
    func reloadRefusesAndServes() throws {
        let ports = try freePorts(4)
        let upstream = try Self.upstream(ports)
        let udpd = try UDPDProcess(config: Self.config(nil, ports: ports))
        try udpd.waitUntilReady()
        for example in Self.cases {
            try udpd.rewriteConfig(Self.config((example.key, example.lines), ports: ports))
            let reload = try udpd.udpctl(["reload"])
            #expect(reload.status == 1, "\(example.name): \(reload.standardOutput)\(reload.standardError)")
            let position = "\(udpd.configPath):\(example.line):\(example.column): error: '\(example.key)'"
            let said = reload.standardOutput + reload.standardError
            #expect(said.contains(position), "\(example.name): \(said)")
            try serveEveryKind(ports)
            #expect(udpd.isRunning, "\(example.name): udpd died:\n\(udpd.log)")
        }
        #expect(try udpd.status().generation == 1)
        #expect(upstream.isRunning)
    }

    /// A TCP connection (idle timer), a datagram through the forward (session sweep, session table) and a
    /// datagram to the other echo (rate limiter, workers).
    private func serveEveryKind(_ ports: [UInt16]) throws {
        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try tcp.send("ping")
        #expect(String(decoding: tcp.receive(count: 4), as: UTF8.self) == "ping")
        for port in [ports[1], ports[3]] {
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: port)!)
            try client.send("hello \(port)")
            #expect(client.receiveText() == "hello \(port)")
        }
    }

    @Test(
        "udpctl --timeout takes 0.001 to 3600 seconds; anything else is a usage error, never a trap",
        arguments: ["1e19", "-1", "0", "nan", "inf", "3601", "1e-9"]
    )
    func udpctlTimeoutOutOfRange(_ value: String) throws {
        let directory = try TemporaryDirectory()
        let result = try runCommand(
            BuiltProducts.path("udpctl"),
            ["-s", directory.file("none.sock"), "--timeout", value, "status"]
        )
        // ArgumentParser's usage errors exit 64; a trap would be a signal (the Process reports 132 or 133, or 4/5).
        #expect(result.status == 64, "--timeout \(value): status \(result.status)\n\(result.standardError)")
        #expect(result.standardError.contains("--timeout"), "\(result.standardError)")
    }

    @Test("udpctl --timeout at its bounds waits as asked")
    func udpctlTimeoutInRange() throws {
        let directory = try TemporaryDirectory()
        for value in ["0.001", "3600"] {
            let result = try runCommand(
                BuiltProducts.path("udpctl"),
                ["-s", directory.file("none.sock"), "--timeout", value, "status"]
            )
            // No daemon listens there: exit 2, "no daemon reachable", after a valid option.
            #expect(result.status == 2, "--timeout \(value): \(result.standardError)")
        }
    }
}
