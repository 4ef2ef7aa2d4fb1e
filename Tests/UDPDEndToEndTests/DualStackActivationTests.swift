import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A launcher doing what systemd does with its default `BindIPv6Only=both`: one AF_INET6 socket per protocol on
/// `[::]:port` with IPV6_V6ONLY off, placed at descriptors 3, 4, ..., announced with LISTEN_PID/LISTEN_FDS/
/// LISTEN_FDNAMES, then udpd exec'ed in the same process.
func dualStackLauncher(
    port: UInt16,
    protocols: [String],
    reusePort: Bool = false,
    in directory: TemporaryDirectory
) throws -> [String] {
    guard let python3Path else { throw TestFailure("python3 is not installed") }
    let protocolList = protocols.map { "\"\($0)\"" }.joined(separator: ", ")
    let script = """
        import os, socket, sys
        fds = []
        for proto in [\(protocolList)]:
            kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
            s = socket.socket(socket.AF_INET6, kind)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            if \(reusePort ? "True" : "False"):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            s.bind(("::", \(port)))
            if proto == "tcp":
                s.listen(16)
            fds.append(os.dup(s.fileno()))
            s.close()
        \(activationHandOver(names: "\":\".join(\"udpd-\" + p + \".socket\" for p in [\(protocolList)])"))
        """
    return [python3Path, try directory.write("activate-dual.py", script)]
}

@Suite("systemd's dual-stack sockets (BindIPv6Only=both) are adopted for family: dual", .serialized)
struct DualStackActivationTests {
    @Test(
        "inherited dual-stack UDP and TCP sockets serve 127.0.0.1 and ::1 from the asked address; status says +IPv4",
        .enabled(if: python3Path != nil && hasIPv6Loopback, "python3 and ::1 are needed")
    )
    func adoptsDualStackSockets() throws {
        let port = try probeFreePort()
        let launcherDirectory = try TemporaryDirectory()
        let launcher = try dualStackLauncher(port: port, protocols: ["udp", "tcp"], in: launcherDirectory)
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    udp: \(port)
                    tcp: \(port)
                    family: dual
                    workers: 1
                    allow: [127.0.0.1/32, "::1/128"]
                """,
            launcher: launcher
        )
        // Before: the IPv4 wildcard bind beside the adopted [::] socket failed with "address already in use".
        let status = try udpd.waitUntilReady()
        let listeners = try #require(status.services.first { $0.name == "echo" }?.listeners)
        #expect(listeners.map(\.address) == ["::", "::"], "no IPv4 socket beside the dual-stack ones: \(listeners)")
        #expect(listeners.allSatisfy { $0.dualStack == true })
        #expect(listeners.first { $0.proto == "udp" }?.replySource == "pktinfo")

        // A connected client accepts only a reply whose source is the address it sent to: from 127.0.0.1 to
        // 127.0.0.2, the kernel alone would answer from 127.0.0.1.
        var exchanges: [(from: String, to: String, answered: Bool)] = [
            ("127.0.0.1", "127.0.0.1", true), ("::1", "::1", true),
        ]
        if hasSecondLoopbackAddress {
            exchanges += [("127.0.0.1", "127.0.0.2", true), ("127.0.0.2", "127.0.0.1", false)]
        }
        for exchange in exchanges {
            let client = try ConnectedUDPClient(from: exchange.from, to: IPEndpoint(address: exchange.to, port: port)!)
            try client.send("to \(exchange.to)")
            let reply = client.receiveText()
            if exchange.answered {
                #expect(reply == "to \(exchange.to)", "\(exchange.from) to \(exchange.to)")
            } else {
                #expect(reply == nil, "127.0.0.2 is not allowed: the IPv4 client must meet the IPv4 allow list")
            }
        }
        for address in ["127.0.0.1", "::1"] {
            let stream = try TCPTestClient(to: IPEndpoint(address: address, port: port)!)
            try stream.send("tcp \(address)\n")
            let expected = Array("tcp \(address)\n".utf8)
            #expect(stream.receive(count: expected.count) == expected, "tcp over \(address)")
        }
        if hasSecondLoopbackAddress {
            let counters = try udpd.counters("echo")
            #expect(counters.drops["denied"] == 1, "\(counters)")
        }

        let table = try udpd.udpctl(["status"])
        #expect(table.standardOutput.contains("[::]:\(port) +IPv4"), "\(table.standardOutput)")
        let json = try udpd.udpctl(["status", "--json"])
        #expect(json.standardOutput.contains("\"dual_stack\" : true"), "\(json.standardOutput)")
        #expect(udpd.log.contains("an inherited dual-stack socket serves IPv4 too"), "\(udpd.log)")

        // A reload plans the same listeners: the dual-stack sockets stay, and no IPv4 twin is bound beside them.
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)")
        let again = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: port)!)
        try again.send("after reload")
        #expect(again.receiveText() == "after reload")
        #expect(try udpd.status().services.first { $0.name == "echo" }?.listeners.count == 2)

        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit() == 0)
    }

    @Test(
        "a program behind a dual-stack UDP socket sees its IPv4 client as IPv4, not ::ffff:127.0.0.1",
        .enabled(if: python3Path != nil && hasIPv6Loopback, "python3 and ::1 are needed")
    )
    func programSeesIPv4Client() throws {
        let port = try probeFreePort()
        let launcherDirectory = try TemporaryDirectory()
        let launcher = try dualStackLauncher(port: port, protocols: ["udp"], in: launcherDirectory)
        let udpd = try UDPDProcess(
            config: """
                services:
                  who:
                    handler: exec
                    udp: \(port)
                    family: dual
                    command: [/bin/sh, -c, 'printf "%s %s" "$REMOTE_ADDR" "$LOCAL_ADDR"']
                """,
            launcher: launcher
        )
        try udpd.waitUntilReady()
        for (address, expected) in [("127.0.0.1", "127.0.0.1 127.0.0.1"), ("::1", "::1 ::1")] {
            let client = try ConnectedUDPClient(from: address, to: IPEndpoint(address: address, port: port)!)
            try client.send("who")
            #expect(client.receiveText() == expected, "over \(address)")
        }
    }

    @Test(
        "workers join an inherited dual-stack socket with SO_REUSEPORT as dual-stack sockets, serving both families",
        .enabled(if: python3Path != nil && hasIPv6Loopback, "python3 and ::1 are needed")
    )
    func dualStackWorkersJoin() throws {
        let port = try probeFreePort()
        let launcherDirectory = try TemporaryDirectory()
        let launcher = try dualStackLauncher(port: port, protocols: ["udp"], reusePort: true, in: launcherDirectory)
        let udpd = try UDPDProcess(
            config: "services:\n  echo: {handler: echo, udp: \(port), family: dual, workers: 3}\n",
            launcher: launcher
        )
        try udpd.waitUntilReady()
        #expect(udpd.log.contains("workers=3"), "\(udpd.log)")
        // Different source ports spread over the group's sockets; every one must answer both families.
        for index in 0..<24 {
            let address = index % 2 == 0 ? "127.0.0.1" : "::1"
            let client = try ConnectedUDPClient(from: address, to: IPEndpoint(address: address, port: port)!)
            try client.send("n\(index)")
            #expect(client.receiveText() == "n\(index)", "over \(address)")
        }
    }

    @Test(
        "a dual-stack socket handed to an IPv6-only service is closed with advice, and udpd binds its own",
        .enabled(if: python3Path != nil && hasIPv6Loopback, "python3 and ::1 are needed")
    )
    func refusesDualStackForOneFamily() throws {
        let port = try probeFreePort()
        let launcherDirectory = try TemporaryDirectory()
        let launcher = try dualStackLauncher(port: port, protocols: ["udp"], in: launcherDirectory)
        let udpd = try UDPDProcess(
            config: "services:\n  echo: {handler: echo, udp: \(port), family: ipv6}\n",
            launcher: launcher
        )
        try udpd.waitUntilReady()
        #expect(udpd.log.contains("BindIPv6Only=ipv6-only"), "\(udpd.log)")
        let client = try ConnectedUDPClient(from: "::1", to: IPEndpoint(address: "::1", port: port)!)
        try client.send("v6")
        #expect(client.receiveText() == "v6")
        #expect(isPortFree("127.0.0.1", port, proto: "udp"), "IPv4 is not served by an IPv6-only service")
    }
}
