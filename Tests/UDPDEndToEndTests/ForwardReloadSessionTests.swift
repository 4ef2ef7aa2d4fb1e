import Foundation
import Synchronization
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// Forward sessions across reloads (issue 14, item 4): a reload that changes a forward service hands its UDP
/// sessions to the new handler instead of closing them. Sessions whose upstream the service still has carry over
/// with their sockets (the upstream sees the same client port, and a reply in flight arrives); the others drain,
/// relaying what comes back until idle. The test upstreams delay their answers, so that replies are in flight when
/// the reload lands, and record the source port of every request.
@Suite("forward sessions across reloads: carried over or drained, no reply lost", .serialized)
struct ForwardReloadSessionTests {
    static func config(port: UInt16, upstreams: [CountingUpstream], timeout: String) -> String {
        let list = upstreams.map { "127.0.0.1:\($0.port)" }.joined(separator: ", ")
        return """
            services:
              kdc:
                handler: forward
                udp: \(port)
                bind: [127.0.0.1]
                upstream: [\(list)]
                health-check: {probe: none}
                timeout: \(timeout)
            """
    }

    static func reload(_ udpd: UDPDProcess, to config: String) throws {
        try udpd.rewriteConfig(config)
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)")
    }

    /// Clients handed to the load thread, which alone uses them until it signals that it is done: `@unchecked`.
    struct LoadClients: @unchecked Sendable {
        let sockets: [ConnectedUDPClient]
    }

    static func clients(_ count: Int, port: UInt16) throws -> [ConnectedUDPClient] {
        try (0..<count).map { _ in
            try ConnectedUDPClient(
                from: "127.0.0.1",
                to: IPEndpoint(address: "127.0.0.1", port: port)!,
                timeoutMilliseconds: 3000
            )
        }
    }

    @Test("a reload that changes the service carries its sessions over: replies in flight arrive, same port upstream")
    func changedServiceCarriesSessions() throws {
        let ports = try freePorts(2)
        let upstream = try CountingUpstream(name: "A", port: ports[1])
        upstream.replyDelay = .milliseconds(500)
        let udpd = try UDPDProcess(config: Self.config(port: ports[0], upstreams: [upstream], timeout: "30s"))
        try udpd.waitUntilReady()
        let clients = try Self.clients(8, port: ports[0])
        for (index, client) in clients.enumerated() { try client.send("req-\(index)-1") }
        usleep(100_000)  // every request reached the upstream; every answer is on its way
        try Self.reload(udpd, to: Self.config(port: ports[0], upstreams: [upstream], timeout: "31s"))
        for (index, client) in clients.enumerated() {
            #expect(client.receiveText() == "A:req-\(index)-1", "client \(index)\n\(udpd.log)")
        }
        upstream.replyDelay = .zero
        for (index, client) in clients.enumerated() {
            try client.send("req-\(index)-2")
            #expect(client.receiveText() == "A:req-\(index)-2", "client \(index)")
        }
        let portOf = Dictionary(zip(upstream.requests, upstream.sourcePorts), uniquingKeysWith: { first, _ in first })
        for index in clients.indices {
            #expect(
                portOf["req-\(index)-1"] != nil && portOf["req-\(index)-1"] == portOf["req-\(index)-2"],
                "client \(index): the upstream saw ports \(portOf)"
            )
        }
        #expect(try udpd.counters("kdc").dropped == 0)
        #expect(udpd.log.contains("carried=8"), "\(udpd.log)")
    }

    @Test("a reload that moves the service to another upstream drains the old sessions; later requests go to the new")
    func changedUpstreamDrains() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        first.replyDelay = .milliseconds(500)
        let udpd = try UDPDProcess(config: Self.config(port: ports[0], upstreams: [first], timeout: "30s"))
        try udpd.waitUntilReady()
        let clients = try Self.clients(8, port: ports[0])
        for (index, client) in clients.enumerated() { try client.send("req-\(index)-1") }
        usleep(100_000)
        try Self.reload(udpd, to: Self.config(port: ports[0], upstreams: [second], timeout: "30s"))
        for (index, client) in clients.enumerated() {
            #expect(client.receiveText() == "A:req-\(index)-1", "client \(index)\n\(udpd.log)")
        }
        for (index, client) in clients.enumerated() {
            try client.send("req-\(index)-2")
            #expect(client.receiveText() == "B:req-\(index)-2", "client \(index)")
        }
        #expect(first.requests.allSatisfy { $0.hasSuffix("-1") }, "\(first.requests)")
        #expect(second.requests.allSatisfy { $0.hasSuffix("-2") }, "\(second.requests)")
        #expect(try udpd.counters("kdc").dropped == 0)
        #expect(udpd.log.contains("draining=8"), "\(udpd.log)")
    }

    @Test("5 reloads that change the service while 16 clients keep requests in flight: no reply lost")
    func reloadsUnderLoad() throws {
        let ports = try freePorts(2)
        let upstream = try CountingUpstream(name: "A", port: ports[1])
        upstream.replyDelay = .milliseconds(30)
        let udpd = try UDPDProcess(config: Self.config(port: ports[0], upstreams: [upstream], timeout: "30s"))
        try udpd.waitUntilReady()
        let clients = LoadClients(sockets: try Self.clients(16, port: ports[0]))
        let stop = Atomic<Bool>(false)
        let outcome = Mutex((rounds: 0, lost: [String]()))
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            defer { done.signal() }
            var round = 0
            // Bounded: at most 2,000 rounds (each waits for its 16 answers, at most 3 s each).
            while !stop.load(ordering: .relaxed), round < 2000 {
                round += 1
                for (index, client) in clients.sockets.enumerated() { try? client.send("req-\(index)-\(round)") }
                for (index, client) in clients.sockets.enumerated() {
                    let expected = "A:req-\(index)-\(round)"
                    if client.receiveText() != expected { outcome.withLock { $0.lost.append(expected) } }
                }
                outcome.withLock { $0.rounds = round }
            }
        }
        for reload in 1...5 {
            usleep(300_000)
            let timeout = reload % 2 == 1 ? "31s" : "30s"
            try Self.reload(udpd, to: Self.config(port: ports[0], upstreams: [upstream], timeout: timeout))
        }
        usleep(300_000)
        stop.store(true, ordering: .relaxed)
        #expect(done.wait(timeout: .now() + 60) == .success)
        let (rounds, lost) = outcome.withLock { ($0.rounds, $0.lost) }
        #expect(rounds >= 10, "only \(rounds) rounds")
        #expect(lost.isEmpty, "\(lost.count) of \(rounds * 16) replies lost: \(lost.prefix(10))\n\(udpd.log)")
        #expect(try udpd.counters("kdc").dropped == 0)
        #expect(try udpd.status().generation == 6)
    }

    @Test(
        "dnsmasq behind the forward: 16 clients through 5 reloads that change the service, every query answered",
        .enabled(if: Dnsmasq.isInstalled, "dnsmasq is not installed")
    )
    func dnsmasqThroughReloads() throws {
        let dnsmasq = try Dnsmasq()
        let port = try probeFreePort()
        func config(_ timeout: String) -> String {
            """
            services:
              dns:
                handler: forward
                udp: \(port)
                bind: [127.0.0.1]
                upstream: ["127.0.0.1:\(dnsmasq.endpoint.port)"]
                timeout: \(timeout)
            """
        }
        let udpd = try UDPDProcess(config: config("30s"))
        try udpd.waitUntilReady()
        let clients = LoadClients(sockets: try Self.clients(16, port: port))
        let stop = Atomic<Bool>(false)
        let outcome = Mutex((queries: 0, lost: [UInt16]()))
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            defer { done.signal() }
            var id: UInt16 = 0
            // Bounded: at most 2,000 rounds of 16 queries, each answered within 3 s or counted lost.
            for _ in 0..<2000 where !stop.load(ordering: .relaxed) {
                var asked: [UInt16] = []
                for client in clients.sockets {
                    id &+= 1
                    asked.append(id)
                    try? client.send(Array(DNSOverTCP.query(id: id, name: "host\(id).example.test").dropFirst(2)))
                }
                for (client, expected) in zip(clients.sockets, asked) {
                    let answer = client.receive()
                    let answeredID = answer.flatMap { $0.count >= 2 ? UInt16($0[0]) << 8 | UInt16($0[1]) : nil }
                    if answeredID != expected { outcome.withLock { $0.lost.append(expected) } }
                }
                outcome.withLock { $0.queries += asked.count }
            }
        }
        for reload in 1...5 {
            usleep(300_000)
            try Self.reload(udpd, to: config(reload % 2 == 1 ? "31s" : "30s"))
        }
        usleep(300_000)
        stop.store(true, ordering: .relaxed)
        #expect(done.wait(timeout: .now() + 60) == .success)
        let (queries, lost) = outcome.withLock { ($0.queries, $0.lost) }
        #expect(queries >= 160, "only \(queries) queries")
        #expect(lost.isEmpty, "\(lost.count) of \(queries) queries unanswered: \(lost.prefix(10))\n\(udpd.log)")
        #expect(try udpd.counters("dns").dropped == 0)
        withExtendedLifetime(dnsmasq) {}
    }
}
