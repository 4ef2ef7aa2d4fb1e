import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A configuration with an echo and a discard service on free ports, and the ports chosen.
struct TwoServices {
    let echoPort: UInt16
    let discardPort: UInt16

    init() throws {
        let echo = try probeFreePort()
        var discard = try probeFreePort()
        while discard == echo { discard = try probeFreePort() }
        echoPort = echo
        discardPort = discard
    }

    var yaml: String {
        """
        log:
          level: debug
        services:
          echo:
            handler: echo
            udp: \(echoPort)
            tcp: [\(echoPort)]
          discard:
            handler: discard
            udp: [\(discardPort)]
            tcp: \(discardPort)
        """
    }
}

@Suite("udpd serves echo and discard from the right address", .serialized)
struct ServingTests {
    @Test("UDP echo answers connected clients on 127.0.0.1, 127.0.0.2 and ::1 from the address they asked")
    func udpEchoFromEveryAddress() throws {
        let ports = try TwoServices()
        let udpd = try UDPDProcess(config: ports.yaml)
        try udpd.waitUntilReady()
        var targets = [("127.0.0.1", "127.0.0.1")]
        if hasSecondLoopbackAddress { targets.append(("127.0.0.1", "127.0.0.2")) }
        if hasIPv6Loopback { targets.append(("::1", "::1")) }
        for (source, destination) in targets {
            let client = try ConnectedUDPClient(
                from: source,
                to: IPEndpoint(address: destination, port: ports.echoPort)!
            )
            try client.send("ping \(destination)")
            #expect(client.receiveText() == "ping \(destination)", "no echo from \(destination):\n\(udpd.log)")
        }
        #expect(
            try eventually {
                try udpd.status().services.first { $0.name == "echo" }?.counters.txPackets
                    == UInt64(targets.count)
            }
        )
        let status = try udpd.status()
        let echo = try #require(status.services.first { $0.name == "echo" })
        #expect(echo.counters.rxPackets == UInt64(targets.count))
        #expect(echo.counters.txPackets == UInt64(targets.count))
        #expect(echo.listeners.contains { $0.proto == "udp" && $0.address == "0.0.0.0" && $0.replySource == "pktinfo" })
        #expect(udpd.log.contains("listening"))
        #expect(udpd.log.contains("reply_source=pktinfo"))
    }

    @Test("TCP echo returns every byte over IPv4 and IPv6, and closes after the client does")
    func tcpEcho() throws {
        let ports = try TwoServices()
        let udpd = try UDPDProcess(config: ports.yaml)
        try udpd.waitUntilReady()
        var addresses = ["127.0.0.1"]
        if hasIPv6Loopback { addresses.append("::1") }
        for address in addresses {
            let client = try TCPTestClient(to: IPEndpoint(address: address, port: ports.echoPort)!)
            let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0) }
            try client.send(payload)
            #expect(client.receive(count: payload.count) == payload, "TCP echo over \(address)")
            client.shutdownWrite()
            #expect(client.readsEndOfFile())
        }
        let echo = try #require(try udpd.status().services.first { $0.name == "echo" })
        #expect(echo.counters.tcpAccepted == UInt64(addresses.count))
        #expect(echo.listeners.contains { $0.proto == "tcp" && $0.replySource == "connection" })
    }

    @Test("discard receives and counts, and never answers over UDP or TCP")
    func discard() throws {
        let ports = try TwoServices()
        let udpd = try UDPDProcess(config: ports.yaml)
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports.discardPort)!,
            timeoutMilliseconds: 300
        )
        try client.send("into the void")
        #expect(client.receive() == nil)
        let tcp = try TCPTestClient(
            to: IPEndpoint(address: "127.0.0.1", port: ports.discardPort)!,
            timeoutMilliseconds: 300
        )
        try tcp.send("nothing comes back")
        #expect(tcp.receive(count: 1).isEmpty)
        let discard = try #require(try udpd.status().services.first { $0.name == "discard" })
        #expect(discard.counters.rxPackets == 1)
        #expect(discard.counters.txPackets == 0)
    }

    @Test("echo refuses to answer a well-known service port, and counts it")
    func reflectionIsRefused() throws {
        let ports = try TwoServices()
        let udpd = try UDPDProcess(config: ports.yaml)
        try udpd.waitUntilReady()
        // 11211 (memcached) and 1900 (SSDP) need no privileges; skip whichever is in use here.
        guard let sourcePort: UInt16 = [11211, 1900, 5353].first(where: { isPortFree("127.0.0.1", $0, proto: "udp") })
        else { return }
        let socket = try UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: sourcePort)!)
        defer { socket.close() }
        let target = IPEndpoint(address: "127.0.0.1", port: ports.echoPort)!
        _ = target.withSockAddr { address, length in
            Array("loop?".utf8).withUnsafeBytes {
                sendto(socket.descriptor.rawValue, $0.baseAddress, $0.count, 0, address, length)
            }
        }
        let deadline = ContinuousClock.now + .seconds(5)
        var dropped: UInt64 = 0
        while ContinuousClock.now < deadline {
            dropped = try udpd.status().services.first { $0.name == "echo" }?.counters.drops["reflection"] ?? 0
            if dropped > 0 { break }
            usleep(20_000)
        }
        #expect(dropped == 1)
        #expect(try udpd.status().services.first { $0.name == "echo" }?.counters.txPackets == 0)
    }

    @Test("SIGTERM and SIGINT stop udpd with status 0 and free its ports")
    func signalsStopCleanly() throws {
        for signal in [SIGTERM, SIGINT] {
            let ports = try TwoServices()
            let udpd = try UDPDProcess(config: ports.yaml)
            try udpd.waitUntilReady()
            udpd.send(signal: signal)
            #expect(udpd.waitForExit() == 0, "exit status after signal \(signal):\n\(udpd.log)")
            #expect(isPortFree("0.0.0.0", ports.echoPort, proto: "udp"))
            #expect(isPortFree("0.0.0.0", ports.echoPort, proto: "tcp"))
            #expect(!FileManager.default.fileExists(atPath: udpd.socketPath))
        }
    }

    @Test("a second udpd on the same ports exits 1 naming the service, address and port")
    func secondInstanceOnSamePortsFails() throws {
        let ports = try TwoServices()
        let first = try UDPDProcess(config: ports.yaml)
        try first.waitUntilReady()
        let second = try UDPDProcess(config: ports.yaml)
        #expect(second.waitForExit() == 1)
        #expect(second.log.contains("service 'echo'"), "log: \(second.log)")
        #expect(second.log.contains(":\(ports.echoPort)"))
        #expect(second.log.contains("already in use"))
        // The first one is undisturbed.
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports.echoPort)!
        )
        try client.send("still here")
        #expect(client.receiveText() == "still here")
    }

    @Test("a port held by a process that is not udpd makes udpd exit 1")
    func portHeldByAnotherProcess() throws {
        let ports = try TwoServices()
        let holder = try UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: ports.discardPort)!)
        defer { holder.close() }
        let udpd = try UDPDProcess(config: ports.yaml)
        #expect(udpd.waitForExit() == 1)
        #expect(udpd.log.contains("service 'discard': cannot bind udp 0.0.0.0:\(ports.discardPort)"), "\(udpd.log)")
    }

    @Test("without pktinfo a wildcard service falls back to per-address listeners, and says so")
    func kernelReplySourceIsVisible() throws {
        let ports = try TwoServices()
        let udpd = try UDPDProcess(config: ports.yaml, environment: ["UDPD_TESTING_WITHOUT_PKTINFO": "1"])
        let status = try udpd.waitUntilReady()
        let echo = try #require(status.services.first { $0.name == "echo" })
        #expect(echo.bindFallback == true)
        let udp = echo.listeners.filter { $0.proto == "udp" }
        #expect(udp.contains { $0.address == "127.0.0.1" }, "\(udp)")
        #expect(udp.allSatisfy { $0.replySource == "bound" }, "\(udp)")
        #expect(!udp.contains { $0.address == "0.0.0.0" || $0.address == "::" })
        #expect(echo.listeners.contains { $0.proto == "tcp" && $0.address == "0.0.0.0" })
        #expect(udpd.log.contains("serving the service per address instead"), "\(udpd.log)")
        #expect(udpd.log.contains("bind_fallback=true"))
        let json = try udpd.udpctl(["status", "--json"]).standardOutput
        #expect(json.contains("\"bind_fallback\" : true"), "\(json)")
        let table = try udpd.udpctl(["status"]).standardOutput
        #expect(table.contains("bind fallback: echo, discard"), "\(table)")
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports.echoPort)!
        )
        try client.send("still answered")
        #expect(client.receiveText() == "still answered")
    }
}
