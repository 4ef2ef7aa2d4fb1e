import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// One forged datagram whose source is one of udpd's own listeners must not start a loop between its services:
/// udpd never answers (nor relays) a datagram from its own listening addresses and ports.
@Suite("datagrams from udpd's own listeners", .serialized)
struct OwnSourceTests {
    /// How long a loop gets to show itself: at the ~200,000 turns a second it ran at, millions of packets.
    static let loopWindow: Duration = .milliseconds(500)

    @Test(
        "a datagram forged from one echo service to another is dropped at once, in both directions and families",
        .enabled(if: isRoot, "forging a source address needs a raw socket, so root")
    )
    func echoToEchoDoesNotLoop() throws {
        let ports = try freePorts(2)
        // `a` is a wildcard listener (its own addresses are the host's), `b` is bound to 127.0.0.1 and ::1.
        let bindB = hasIPv6Loopback ? #"[127.0.0.1, "::1"]"# : "[127.0.0.1]"
        let udpd = try UDPDProcess(
            config: """
                services:
                  a:
                    handler: echo
                    udp: \(ports[0])
                  b:
                    handler: echo
                    udp: \(ports[1])
                    bind: \(bindB)
                """
        )
        try udpd.waitUntilReady()
        var loopbacks = ["127.0.0.1"]
        if hasIPv6Loopback { loopbacks.append("::1") }
        var forged: UInt64 = 0
        for address in loopbacks {
            let a = try #require(IPEndpoint(address: address, port: ports[0]))
            let b = try #require(IPEndpoint(address: address, port: ports[1]))
            try ForgedDatagram.send(Array("ping-pong".utf8), from: a, to: b)
            try ForgedDatagram.send(Array("pong-ping".utf8), from: b, to: a)
            forged += 2
        }
        Thread.sleep(forTimeInterval: 0.5)
        let a = try udpd.counters("a")
        let b = try udpd.counters("b")
        // Each forged datagram is received once and dropped; nothing is sent, so nothing comes back.
        #expect(a.rxPackets + b.rxPackets <= forged, "a: \(a), b: \(b)")
        #expect(a.txPackets + b.txPackets == 0, "a: \(a), b: \(b)")
        #expect((a.drops["own_source"] ?? 0) + (b.drops["own_source"] ?? 0) == forged, "a: \(a), b: \(b)")
        // A client of its own, on a port udpd does not listen on, is still answered.
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try client.send("still served")
        #expect(client.receiveText() == "still served")
    }

    @Test(
        "a listener added by a reload is one of udpd's own at once",
        .enabled(if: isRoot, "forging a source address needs a raw socket, so root")
    )
    func reloadPublishesNewListeners() throws {
        let ports = try freePorts(2)
        func config(_ count: Int) -> String {
            "services:\n"
                + (0..<count).map { "  echo\($0):\n    handler: echo\n    udp: \(ports[$0])\n" }.joined()
        }
        let udpd = try UDPDProcess(config: config(1))
        try udpd.waitUntilReady()
        try udpd.rewriteConfig(config(2))
        let reload = try udpd.udpctl(["reload"])
        try #require(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)")
        let old = try #require(IPEndpoint(address: "127.0.0.1", port: ports[0]))
        let new = try #require(IPEndpoint(address: "127.0.0.1", port: ports[1]))
        try ForgedDatagram.send(Array("from the new one".utf8), from: new, to: old)
        Thread.sleep(forTimeInterval: 0.5)
        let first = try udpd.counters("echo0")
        let second = try udpd.counters("echo1")
        #expect(first.rxPackets + second.rxPackets <= 1, "echo0: \(first), echo1: \(second)")
        #expect(first.drops["own_source"] == 1, "\(first)")
    }

    @Test(
        "an address added while udpd runs is one of a wildcard listener's own at once",
        .enabled(if: isRoot, "network namespaces and raw sockets need root")
    )
    func addressChangePublishesAddresses() throws {
        let lab = try MultiHomedLab()
        let ports = try freePorts(3)
        // `marker` follows addresses, so that status shows when udpd has taken the new one in.
        let udpd = try UDPDProcess(
            config: """
                services:
                  a: {handler: echo, udp: \(ports[0]), family: ipv4}
                  b: {handler: echo, udp: \(ports[1]), family: ipv4}
                  marker: {handler: discard, udp: \(ports[2]), bind: per-address, interfaces: [eth2], family: ipv4}
                """,
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        let added = "10.201.2.77"
        try lab.ip(["-n", lab.server, "addr", "add", "\(added)/24", "dev", "eth2"])
        let followed = try eventually {
            try udpd.status().services.first { $0.name == "marker" }?.listeners.contains { $0.address == added } == true
        }
        try #require(followed, "udpd did not follow \(added):\n\(udpd.log)")
        Thread.sleep(forTimeInterval: 0.2)
        let forged = try lab.client(lab.server, ["forge", added, "\(ports[0])", added, "\(ports[1])"])
        try #require(forged.status == 0, "\(forged.standardOutput)\(forged.standardError)")
        Thread.sleep(forTimeInterval: 0.5)
        let a = try udpd.counters("a")
        let b = try udpd.counters("b")
        #expect(a.rxPackets + b.rxPackets <= 1, "a: \(a), b: \(b)")
        #expect(b.drops["own_source"] == 1, "\(b)")
    }

    @Test(
        "a datagram forged from an echo service to an exec service starts no program and no loop",
        .enabled(if: isRoot, "forging a source address needs a raw socket, so root")
    )
    func echoToExecDoesNotLoop() throws {
        let ports = try freePorts(2)
        let directory = try TemporaryDirectory()
        // Programs of a udpd started as root run as nobody: the file they append to must be theirs to write.
        let spawned = try directory.write("spawned", "")
        chmod(directory.path, 0o755)
        chmod(spawned, 0o666)
        // The shape of examples/services.yaml: the program's output is the reply.
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    udp: \(ports[0])
                  hello:
                    handler: exec
                    udp: \(ports[1])
                    command: [/bin/sh, -c, 'echo started >> \(spawned); printf "hello from udpd\\n"']
                """
        )
        try udpd.waitUntilReady()
        let echo = try #require(IPEndpoint(address: "127.0.0.1", port: ports[0]))
        let exec = try #require(IPEndpoint(address: "127.0.0.1", port: ports[1]))
        try ForgedDatagram.send(Array("hi".utf8), from: echo, to: exec)
        try ForgedDatagram.send(Array("hi".utf8), from: exec, to: echo)
        Thread.sleep(forTimeInterval: 0.5)
        let programs = ((try? String(contentsOfFile: spawned, encoding: .utf8)) ?? "").split(separator: "\n").count
        #expect(programs == 0, "programs started: \(programs)")
        let echoCounters = try udpd.counters("echo")
        let execCounters = try udpd.counters("hello")
        #expect(echoCounters.rxPackets + execCounters.rxPackets <= 2, "echo: \(echoCounters), exec: \(execCounters)")
        #expect(echoCounters.drops["own_source"] == 1, "\(echoCounters)")
        #expect(execCounters.drops["own_source"] == 1, "\(execCounters)")
    }

    @Test("a forward whose upstream name resolves to its own listener sends nothing to itself")
    func forwardIntoItselfDoesNotLoop() throws {
        let port = try probeFreePort()
        // `localhost` resolves to 127.0.0.1 or ::1; the wildcard listener of either family is the forward itself.
        let udpd = try UDPDProcess(
            config: """
                services:
                  fwd:
                    handler: forward
                    udp: \(port)
                    upstream: localhost:\(port)
                """
        )
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: port)!)
        try client.send("where to?")
        Thread.sleep(forTimeInterval: 0.5)
        let status = try #require(try udpd.status().services.first { $0.name == "fwd" })
        #expect(status.counters.rxPackets == 1, "\(status.counters)")
        #expect(status.counters.drops["own_upstream"] == 1, "\(status.counters)")
        #expect(status.forwardSessions == 0)
    }
}
