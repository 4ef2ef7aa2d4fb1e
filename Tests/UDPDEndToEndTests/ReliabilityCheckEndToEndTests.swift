import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Issue 12, findings 3, 5 and 6 with the built binaries and real sockets: allow and deny keep the families apart,
/// `--check` refuses what would fail at start (one positioned line each), and text from input is printed escaped
/// by `--check`, in the daemon's log and by `udpctl status`.
@Suite("allow/deny families, --check gaps and escaped output, with the real binaries", .serialized)
struct ReliabilityCheckEndToEndTests {
    /// Starts an echo service on a free UDP and TCP port with `settings` added to it.
    func startEcho(_ settings: String) throws -> (UDPDProcess, UInt16) {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    udp: \(port)
                    tcp: \(port)
                    workers: 1
                \(settings.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))
                """
        )
        try udpd.waitUntilReady()
        return (udpd, port)
    }

    /// Whether a datagram from `source` to `address`:`port` comes back.
    func udpAnswered(from source: String, to address: String, port: UInt16) throws -> Bool {
        let client = try ConnectedUDPClient(
            from: source,
            to: IPEndpoint(address: address, port: port)!,
            timeoutMilliseconds: 500
        )
        try client.send("ping")
        return client.receiveText() == "ping"
    }

    /// Whether a TCP connection from `source` to `address`:`port` is echoed.
    func tcpAnswered(from source: String, to address: String, port: UInt16) throws -> Bool {
        let client = try TCPTestClient(from: source, to: IPEndpoint(address: address, port: port)!)
        try client.send("ping")
        return client.receive(count: 4) == Array("ping".utf8)
    }

    // MARK: allow and deny (finding 3)

    @Test("deny: [::/0] refuses IPv6 clients only; an IPv4 client is served over UDP and TCP")
    func ipv6DenyLeavesIPv4Alone() throws {
        let (udpd, port) = try startEcho("deny: [\"::/0\"]")
        #expect(try udpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        #expect(try tcpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        if hasIPv6Loopback {
            #expect(try !udpAnswered(from: "::1", to: "::1", port: port))
            #expect(try !tcpAnswered(from: "::1", to: "::1", port: port))
        }
        let expected: UInt64 = hasIPv6Loopback ? 2 : 0
        #expect(try eventually { try drops(udpd, "echo", "denied") == expected })
    }

    @Test("allow: [::/0] serves IPv6 clients only; an IPv4 client is refused over UDP and TCP")
    func ipv6AllowAdmitsNoIPv4() throws {
        let (udpd, port) = try startEcho("allow: [\"::/0\"]")
        #expect(try !udpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        #expect(try !tcpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        if hasIPv6Loopback {
            #expect(try udpAnswered(from: "::1", to: "::1", port: port))
            #expect(try tcpAnswered(from: "::1", to: "::1", port: port))
        }
        #expect(try eventually { try drops(udpd, "echo", "denied") == 2 })
    }

    @Test("deny: [0.0.0.0/0] refuses IPv4 clients only; an IPv6 client is served over UDP and TCP")
    func ipv4DenyLeavesIPv6Alone() throws {
        try #require(hasIPv6Loopback, "needs ::1")
        let (udpd, port) = try startEcho("deny: [0.0.0.0/0]")
        #expect(try udpAnswered(from: "::1", to: "::1", port: port))
        #expect(try tcpAnswered(from: "::1", to: "::1", port: port))
        #expect(try !udpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        #expect(try eventually { try drops(udpd, "echo", "denied") == 1 })
    }

    // MARK: --check (finding 6 and the configuration half of finding 2)

    /// Runs `udpd --check` on `yaml`; the file's path and the result.
    func check(
        _ yaml: String,
        in directory: TemporaryDirectory,
        name: String = "c.yaml"
    ) throws
        -> (String, CommandResult)
    {
        let path = try directory.write(name, yaml)
        return (path, try runCommand(BuiltProducts.path("udpd"), ["-c", path, "--check"]))
    }

    @Test(
        "--check refuses what would fail at start, one positioned line naming the cause",
        arguments: [
            ("services:\n  e: {handler: echo, udp: PORT, bind: [0.0.0.0, 127.0.0.1]}\n", ":2:", "overlaps '0.0.0.0'"),
            ("services:\n  e: {handler: echo, udp: PORT, bind: [\"::ffff:127.0.0.1\"]}\n", ":2:", "IPv4-mapped"),
            ("services:\n  e: {handler: echo, udp: PORT, interfaces: [nosuch0]}\n", ":2:", "interface 'nosuch0'"),
            ("services:\n  e: {handler: echo, udp: PORT, allow: []}\n", ":2:", "'allow' is empty"),
            ("services:\n  e: {handler: echo, udp: PORT, allow: [\"::ffff:0:0/96\"]}\n", ":2:", "0.0.0.0/0"),
            (
                "metrics: {listen: \"127.0.0.1:PORT\"}\nservices:\n  w: {handler: echo, tcp: PORT}\n", ":1:19:",
                "the metrics endpoint needs a TCP port of its own"
            ),
            (
                "services:\n  e: {handler: echo, udp: PORT}\n"
                    + "  f: {handler: forward, udp: 5, upstream: \"127.0.0.1:PORT\"}\n",
                ":3:", "forwarding into itself would loop"
            ),
        ]
    )
    func checkGaps(yaml: String, position: String, cause: String) throws {
        let directory = try TemporaryDirectory()
        let port = try probeFreePort()
        let (path, result) = try check(yaml.replacingOccurrences(of: "PORT", with: "\(port)"), in: directory)
        #expect(result.status == 1)
        let lines = result.standardError.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 1, "\(result.standardError)")
        #expect(lines.first?.hasPrefix(path + position) == true, "\(result.standardError)")
        #expect(lines.first?.contains(cause) == true, "\(result.standardError)")
        #expect(isPortFree("0.0.0.0", port, proto: "udp"))
    }

    // MARK: escaped output (finding 5)

    @Test("--check on names and values with newlines and escape sequences prints one escaped line per error")
    func checkEscapesEveryError() throws {
        let directory = try TemporaryDirectory()
        let yaml = """
            services:
              "evil\\nFORGED:1:1: error: this line is forged\\e[2J":
                handler: echo
                udp: 7
              other:
                handler: "ech\\eo"
                tcp: 7
                "fam\\rily": ipv4
            """
        let (path, result) = try check(yaml, in: directory, name: "evil\n\u{1b}[31m.yaml")
        #expect(result.status == 1)
        let lines = result.standardError.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        let escapedPath = path.replacingOccurrences(of: "\n", with: "\\n").replacingOccurrences(
            of: "\u{1b}",
            with: "\\x1b"
        )
        #expect(lines.count == 3, "\(result.standardError)")
        for line in lines {
            #expect(line.hasPrefix(escapedPath + ":"), "\(line)")
            #expect(!line.unicodeScalars.contains { $0.value < 0x20 }, "a control character in \(line)")
        }
        #expect(lines.contains { $0.contains("'evil\\nFORGED:1:1: error: this line is forged\\x1b[2J'") })
    }

    @Test("the daemon log and udpctl status show input with control characters as one escaped line")
    func logAndStatusEscape() throws {
        let holder = try TemporaryDirectory()
        let port = try probeFreePort()
        let oddConfig = holder.file("odd\n\u{1b}[31mname.yaml")
        try """
        services:
          run:
            handler: exec
            udp: \(port)
            command: [/bin/sh, -c, "printf 'before\\\\033[2Jafter\\\\n' >&2; cat"]
        """.write(toFile: oddConfig, atomically: true, encoding: .utf8)
        // The launcher swaps in the odd path for the configuration UDPDProcess wrote ($2); the rest stays.
        let udpd = try UDPDProcess(
            config: "services: {}\n",
            environment: ["ODD_CONFIG": oddConfig],
            launcher: ["/bin/sh", "-c", "exec \"$0\" -c \"$ODD_CONFIG\" \"$3\" \"$4\""]
        )
        try udpd.waitUntilReady()
        #expect(try udpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        #expect(eventually { udpd.log.contains("before") }, "\(udpd.log)")
        let log = udpd.log
        #expect(log.contains("before\\x1b[2Jafter"), "\(log)")
        #expect(!log.unicodeScalars.contains { $0.value == 0x1b }, "a raw ESC in the log")
        let status = try udpd.udpctl(["status"])
        #expect(status.status == 0, "\(status.standardError)")
        #expect(status.standardOutput.contains("odd\\n\\x1b[31mname.yaml"), "\(status.standardOutput)")
        #expect(!status.standardOutput.unicodeScalars.contains { $0.value == 0x1b })
        let configLines = status.standardOutput.split(separator: "\n").filter { $0.hasPrefix("config:") }
        #expect(configLines.count == 1)
        #expect(configLines.first?.hasSuffix("name.yaml") == true, "the path stays on one line")
    }

    // MARK: bind errors that say where (finding 6)

    @Test("a metrics port held by another program is named in words, not as a raw bind errno")
    func metricsBindErrorIsReadable() throws {
        let held = try TCPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: 0)!)
        defer { held.close() }
        let port = held.localEndpoint.port
        let directory = try TemporaryDirectory()
        let udpPort = try probeFreePort()
        let path = try directory.write(
            "m.yaml",
            "metrics: {listen: \"127.0.0.1:\(port)\"}\nservices:\n  e: {handler: echo, udp: \(udpPort)}\n"
        )
        let result = try runCommand(
            BuiltProducts.path("udpd"),
            ["-c", path, "--control-socket", directory.file("c.sock")],
            timeout: 20
        )
        #expect(result.status == 1)
        let expected =
            "udpd: metrics endpoint 127.0.0.1:\(port): cannot open its TCP socket: the port is already in use"
        #expect(result.standardError.contains(expected), "\(result.standardError)")
        #expect(!result.standardError.contains("bind(descriptor:"), "\(result.standardError)")
    }

    @Test("a bind to an interface that does not exist names the interface, the protocol, address and port")
    func bindErrorNamesTheInterface() throws {
        for proto in ["udp", "tcp"] {
            let endpoint = IPEndpoint(address: "0.0.0.0", port: 0)!
            let options = ListenerSocketOptions(device: "nosuch0")
            do {
                if proto == "udp" {
                    _ = try UDPListenerSocket.bind(endpoint, options: options)
                } else {
                    _ = try TCPListenerSocket.bind(endpoint, options: options)
                }
                Issue.record("\(proto): a bind to a missing interface succeeded")
            } catch {
                #expect(error.code == .noSuchInterface)
                #expect(
                    error.description
                        == "cannot open \(proto) 0.0.0.0:0 on interface 'nosuch0': the interface does not exist on "
                        + "this host"
                )
            }
        }
    }

    // MARK: reload (the configuration half of finding 2)

    @Test("a reload that adds a forward into udpd's own listener is rejected at its position; the old one serves")
    func reloadRefusesAForwardIntoItself() throws {
        let (udpd, port) = try startEcho("")
        let relayPort = try probeFreePort()
        try udpd.rewriteConfig(
            """
            services:
              echo: {handler: echo, udp: \(port), tcp: \(port), workers: 1}
              relay: {handler: forward, udp: \(relayPort), upstream: "127.0.0.1:\(port)"}
            """
        )
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 1, "\(result.standardOutput)\(result.standardError)")
        #expect(
            result.standardError.split(separator: "\n").contains {
                $0.hasPrefix("\(udpd.configPath):3:") && $0.contains("forwarding into itself would loop")
            },
            "\(result.standardError)"
        )
        #expect(try udpAnswered(from: "127.0.0.1", to: "127.0.0.1", port: port))
        #expect(isPortFree("0.0.0.0", relayPort, proto: "udp"))
    }
}
