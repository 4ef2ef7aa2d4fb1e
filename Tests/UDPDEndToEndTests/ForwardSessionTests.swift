import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

private func forwardStatus(_ udpd: UDPDProcess) throws -> ServiceStatus {
    try #require(try udpd.status().services.first { $0.name == "fwd" })
}

/// Descriptors udpd holds open: a session's upstream socket is one, so this shows sessions really closed.
private func openDescriptors(_ udpd: UDPDProcess) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(udpd.pid)/fd").count) ?? -1
}

/// The configuration of a forward to the echo upstream on `ports[0]` (``UDPDProcess/echoUpstream(port:)``).
private func forwardConfig(_ ports: [UInt16], extra: String) -> String {
    """
    services:
      fwd:
        handler: forward
        udp: \(ports[1])
        bind: [127.0.0.1]
        upstream: 127.0.0.1:\(ports[0])
    \(extra)
    """
}

@Suite("forward sessions", .serialized)
struct ForwardSessionTests {
    @Test("more clients than max-sessions: the oldest are evicted and counted, sessions stay bounded, service answers")
    func evictionKeepsSessionsBounded() throws {
        let ports = try freePorts(2)
        let maxSessions = 8
        let clients = 40
        let upstream = try UDPDProcess.echoUpstream(port: ports[0])
        defer { withExtendedLifetime(upstream) {} }
        let udpd = try UDPDProcess(config: forwardConfig(ports, extra: "    max-sessions: \(maxSessions)"))
        try udpd.waitUntilReady()
        let idleDescriptors = openDescriptors(udpd)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[1])!
        // Each client is its own socket, so its own session; bounded in count and, by the receive timeout, in time.
        // All stay open until the end: a closed client's port could be given to the next, which would then reuse
        // its session.
        var open: [ConnectedUDPClient] = []
        for index in 0..<clients {
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: server, timeoutMilliseconds: 2000)
            open.append(client)
            try client.send("client \(index)")
            #expect(client.receiveText() == "client \(index)", "client \(index) got no reply:\n\(udpd.log)")
        }
        // A reply is counted just after the kernel took it, so the client may see it a moment before status does.
        #expect(try eventually { try forwardStatus(udpd).counters.txPackets == UInt64(clients) })
        let status = try forwardStatus(udpd)
        #expect(status.forwardSessions == UInt64(maxSessions))
        #expect(status.counters.drops["session_evicted"] == UInt64(clients - maxSessions), "\(status.counters.drops)")
        #expect(status.counters.txPackets == UInt64(clients))
        // Evicted sessions closed their sockets: udpd holds at most one more descriptor per kept session.
        let held = openDescriptors(udpd)
        #expect(held >= 0 && held <= idleDescriptors + maxSessions + 2, "\(held) descriptors, \(idleDescriptors) idle")
        // A kept session (one of the newest) and a new client are still served.
        let late = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        try late.send("still answering")
        #expect(late.receiveText() == "still answering")
        #expect(try forwardStatus(udpd).forwardSessions == UInt64(maxSessions))
    }

    @Test("idle sessions expire after timeout: forward_sessions drops to 0 and their sockets close")
    func idleSessionsExpire() throws {
        let ports = try freePorts(2)
        let upstream = try UDPDProcess.echoUpstream(port: ports[0])
        defer { withExtendedLifetime(upstream) {} }
        let udpd = try UDPDProcess(config: forwardConfig(ports, extra: "    timeout: 500ms"))
        try udpd.waitUntilReady()
        let idleDescriptors = openDescriptors(udpd)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[1])!
        let clients = try (0..<3).map { _ in try ConnectedUDPClient(from: "127.0.0.1", to: server) }
        for (index, client) in clients.enumerated() {
            try client.send("hello \(index)")
            #expect(client.receiveText() == "hello \(index)")
        }
        #expect(try forwardStatus(udpd).forwardSessions == 3)
        let started = ContinuousClock.now
        #expect(try eventually(timeout: .seconds(5)) { try forwardStatus(udpd).forwardSessions == 0 })
        #expect(ContinuousClock.now - started >= .milliseconds(300), "sessions ended before their timeout")
        // ≤: a control connection still closing may have been counted before.
        #expect(
            eventually(timeout: .seconds(2)) { openDescriptors(udpd) <= idleDescriptors },
            "\(openDescriptors(udpd)) descriptors, \(idleDescriptors) before any session"
        )
        #expect(try forwardStatus(udpd).counters.drops["session_evicted", default: 0] == 0)
        // A client whose session expired opens a new one with its next request.
        try clients[0].send("again")
        #expect(clients[0].receiveText() == "again")
        #expect(try forwardStatus(udpd).forwardSessions == 1)
    }

    @Test("a reload keeps an unchanged forward's sessions, carries a changed one's over with their sockets")
    func reloadKeepsOrCarriesSessions() throws {
        let ports = try freePorts(2)
        let upstream = try UDPDProcess.echoUpstream(port: ports[0])
        defer { withExtendedLifetime(upstream) {} }
        let udpd = try UDPDProcess(config: forwardConfig(ports, extra: "    timeout: 60s"))
        try udpd.waitUntilReady()
        let idleDescriptors = openDescriptors(udpd)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[1])!
        let clients = try (0..<4).map { _ in try ConnectedUDPClient(from: "127.0.0.1", to: server) }
        for client in clients {
            try client.send("before")
            #expect(client.receiveText() == "before")
        }
        #expect(try forwardStatus(udpd).forwardSessions == 4)
        let withSessions = openDescriptors(udpd)
        try udpd.rewriteConfig(forwardConfig(ports, extra: "    timeout: 60s"))
        #expect(try udpd.udpctl(["reload"]).status == 0)
        #expect(try forwardStatus(udpd).forwardSessions == 4, "an unchanged service lost its sessions")
        try udpd.rewriteConfig(forwardConfig(ports, extra: "    timeout: 59s"))
        #expect(try udpd.udpctl(["reload"]).status == 0)
        #expect(try forwardStatus(udpd).forwardSessions == 4, "a changed service did not carry its sessions over")
        // Carried with their sockets: none opened, none closed (one spare for a control connection still closing).
        #expect(abs(openDescriptors(udpd) - withSessions) <= 1, "\(openDescriptors(udpd)) vs \(withSessions)")
        try clients[1].send("after")
        #expect(clients[1].receiveText() == "after")
        #expect(try forwardStatus(udpd).forwardSessions == 4)
        // Carried sessions end like any other: idle for the new timeout, their sockets close.
        try udpd.rewriteConfig(forwardConfig(ports, extra: "    timeout: 1s"))
        #expect(try udpd.udpctl(["reload"]).status == 0)
        #expect(eventually(timeout: .seconds(5)) { (try? forwardStatus(udpd).forwardSessions) == 0 })
        #expect(
            eventually(timeout: .seconds(2)) { openDescriptors(udpd) <= idleDescriptors + 1 },
            "\(openDescriptors(udpd)) descriptors, \(idleDescriptors) before any session"
        )
    }

    @Test("replies of many sessions at once, for two listeners, each reach their client from the address it asked")
    func gatheredRepliesReachEveryClient() throws {
        try #require(hasSecondLoopbackAddress, "127.0.0.2 is not configured on lo")
        let clientsPerService = 48
        let upstream = try BurstEchoUpstream()
        let ports = try freePorts(2)
        // Wildcard listeners, so each reply's source comes from IP_PKTINFO; each client is connected to the address
        // it asked and so refuses a reply from any other.
        let udpd = try UDPDProcess(
            config: """
                services:
                  fwd-a:
                    handler: forward
                    udp: \(ports[0])
                    family: ipv4
                    upstream: 127.0.0.1:\(upstream.port)
                  fwd-b:
                    handler: forward
                    udp: \(ports[1])
                    family: ipv4
                    upstream: 127.0.0.1:\(upstream.port)
                """
        )
        try udpd.waitUntilReady()
        let a = IPEndpoint(address: "127.0.0.2", port: ports[0])!
        let b = IPEndpoint(address: "127.0.0.1", port: ports[1])!
        let clients = try (0..<(2 * clientsPerService)).map { index in
            try ConnectedUDPClient(from: "127.0.0.1", to: index % 2 == 0 ? a : b, timeoutMilliseconds: 3000)
        }
        // The upstream holds every request of a round and then answers them all at once, so the session sockets
        // become readable together: a worker's pass gathers more replies than a batch has slots, for both listeners.
        for round in 0..<3 {
            for (index, client) in clients.enumerated() { try client.send("round \(round) client \(index)") }
            #expect(upstream.answerInOneBurst(expecting: clients.count) == clients.count, "\(udpd.log)")
            for (index, client) in clients.enumerated() {
                let expected = "round \(round) client \(index)"
                let received = client.receiveText()
                // The first missing reply ends the test: 288 more waits of 3 s each would say nothing new.
                try #require(received == expected, "client \(index), round \(round): \(received ?? "no reply")")
            }
        }
        // A reply is counted just after the kernel took it, so the client may see it a moment before status does.
        let expected = UInt64(3 * clientsPerService)
        #expect(
            try eventually { try udpd.counters("fwd-a").txPackets + udpd.counters("fwd-b").txPackets == 2 * expected }
        )
        let services = try udpd.status().services
        for name in ["fwd-a", "fwd-b"] {
            let counters = try #require(services.first { $0.name == name }).counters
            #expect(counters.txPackets == expected, "\(name): \(counters)")
            #expect(counters.drops.isEmpty, "\(name): \(counters.drops)")
        }
    }
}

/// An upstream on 127.0.0.1 that collects a round of requests and then echoes them all in one burst.
private final class BurstEchoUpstream {
    let socket: SocketDescriptor
    let port: UInt16

    init() throws {
        socket = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_DGRAM.rawValue), context: "upstream")
        try socket.bind(to: IPEndpoint(address: "127.0.0.1", port: 0)!, context: "upstream")
        port = try socket.localEndpoint(context: "upstream").port
        var timeout = timeval(tv_sec: 3, tv_usec: 0)
        setsockopt(socket.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Receives up to `expecting` requests (each wait bounded by the 3 s timeout), then answers each to its sender;
    /// returns how many it answered.
    func answerInOneBurst(expecting: Int) -> Int {
        var held: [(payload: [UInt8], sender: sockaddr_storage, length: socklen_t)] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while held.count < expecting {
            var sender = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let count = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &sender) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(socket.rawValue, bytes.baseAddress, bytes.count, 0, $0, &length)
                    }
                }
            }
            guard count >= 0 else { break }
            held.append((Array(buffer[0..<count]), sender, length))
        }
        var answered = 0
        for var request in held {
            let sent = request.payload.withUnsafeBytes { bytes in
                withUnsafePointer(to: &request.sender) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(socket.rawValue, bytes.baseAddress, bytes.count, 0, $0, request.length)
                    }
                }
            }
            if sent == request.payload.count { answered += 1 }
        }
        return answered
    }
}
