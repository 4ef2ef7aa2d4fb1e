import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Forward to a list of upstreams (issue 15), with the real binary and real sockets: two counting upstreams, clients
/// that each send numbered requests from their own socket, and the checks that matter to a Kerberos client: every
/// request answered once the first upstream fails, and none received by both.
@Suite("forward to a pool of upstreams: failover that never sends a request twice", .serialized)
struct UpstreamPoolTests {
    /// udpd forwarding `service` on `port` (UDP and TCP) to `upstreams`, with `healthCheck` (a flow mapping's body).
    static func forward(port: UInt16, to upstreams: [CountingUpstream], healthCheck: String) throws -> UDPDProcess {
        let list = upstreams.map { "127.0.0.1:\($0.port)" }.joined(separator: ", ")
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: forward
                    udp: \(port)
                    tcp: \(port)
                    upstream: [\(list)]
                    health-check: {\(healthCheck)}
                """
        )
        try udpd.waitUntilReady()
        return udpd
    }

    /// The service's upstreams in status.
    static func upstreams(_ udpd: UDPDProcess) throws -> [UpstreamStatus] {
        try udpd.status().services.first { $0.name == "kdc" }?.upstreams ?? []
    }

    /// Clients, each with its own socket (so its own session), sending `req-CLIENT-N` and reading the answer.
    final class Clients {
        let sockets: [ConnectedUDPClient]
        private var sent = 0

        init(count: Int, to port: UInt16, timeoutMilliseconds: Int = 300) throws {
            sockets = try (0..<count).map { _ in
                try ConnectedUDPClient(
                    from: "127.0.0.1",
                    to: IPEndpoint(address: "127.0.0.1", port: port)!,
                    timeoutMilliseconds: timeoutMilliseconds
                )
            }
        }

        /// One request from each client; the answers (`nil` for none), in client order.
        func round() throws -> [(request: String, answer: String?)] {
            sent += 1
            var outcomes: [(String, String?)] = []
            for (index, socket) in sockets.enumerated() {
                let request = "req-\(index)-\(sent)"
                try socket.send(request)
                outcomes.append((request, socket.receiveText()))
            }
            return outcomes
        }
    }

    /// Every answer came from the upstream that recorded its request, and no request reached both upstreams.
    static func expectNoDuplicates(_ first: CountingUpstream, _ second: CountingUpstream) {
        let both = Set(first.requests).intersection(second.requests)
        #expect(both.isEmpty, "requests received by both upstreams: \(both.sorted())")
    }

    @Test("a refused first upstream is down at once; every later request is answered by the second, none by both")
    func refusedUpstreamFailsOver() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(port: ports[0], to: [first, second], healthCheck: "probe: none, interval: 10s")
        let clients = try Clients(count: 8, to: ports[0])

        for outcome in try clients.round() {
            #expect(outcome.answer == "A:\(outcome.request)", "before the failure, the first upstream answers")
        }
        let states = try Self.upstreams(udpd)
        #expect(states.map(\.state) == ["up", "up"] && states[0].sessions == 8, "\(states)")

        first.stop()
        let stopped = ContinuousClock.now
        // The first request of each session after the stop meets the refusal; it was never received, so udpd may
        // send it on; the sessions then move. Every answer must still come from the second upstream.
        var unanswered = 0
        for _ in 0..<5 {
            for outcome in try clients.round() {
                if let answer = outcome.answer {
                    #expect(answer == "B:\(outcome.request)")
                } else {
                    unanswered += 1
                }
            }
        }
        #expect(unanswered <= clients.sockets.count, "at most one request per session is lost: \(unanswered)")
        let down = try Self.upstreams(udpd)
        #expect(down[0].state == "down" && down[0].failures >= 1 && down[1].state == "up", "\(down)")
        #expect(ContinuousClock.now - stopped < .seconds(5))
        #expect(try eventually { try Self.upstreams(udpd)[1].sessions == 8 })

        // TCP: the refused connect goes on to the second upstream, within the same connection.
        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try tcp.send("req-tcp-1\n")
        #expect(String(decoding: tcp.receive(count: 12), as: UTF8.self) == "B:req-tcp-1\n")

        Self.expectNoDuplicates(first, second)
        let table = try udpd.udpctl(["status"]).standardOutput
        #expect(table.contains("DOWN") && table.contains("127.0.0.1:\(ports[1])"), "\(table)")
        let metrics = try PrometheusText.parse(try udpd.udpctl(["metrics"]).standardOutput)
        #expect(metrics.value("udpd_upstream_up", ["service": "kdc", "upstream": "127.0.0.1:\(ports[1])"]) == 0)
        #expect(metrics.value("udpd_upstream_up", ["service": "kdc", "upstream": "127.0.0.1:\(ports[2])"]) == 1)
        let failures = metrics.value(
            "udpd_upstream_failures_total",
            ["service": "kdc", "upstream": "127.0.0.1:\(ports[1])"]
        )
        #expect((failures ?? 0) >= 1)
    }

    @Test("a session's only request, refused, goes to the next upstream at once: no request lost, none twice")
    func refusedFirstRequestIsSentOn() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(port: ports[0], to: [first, second], healthCheck: "probe: none, interval: 10s")
        first.stop()
        // Fresh sockets, one request each, as MIT clients send them: each is answered by the second upstream, the
        // first of them after its refusal by the first.
        for number in 0..<5 {
            let client = try ConnectedUDPClient(
                from: "127.0.0.1",
                to: IPEndpoint(address: "127.0.0.1", port: ports[0])!,
                timeoutMilliseconds: 500
            )
            let started = ContinuousClock.now
            try client.send("req-fresh-\(number)")
            #expect(client.receiveText() == "B:req-fresh-\(number)")
            #expect(ContinuousClock.now - started < .milliseconds(400))
        }
        #expect(first.requests.isEmpty)
        #expect(try Self.upstreams(udpd)[0].state == "down")
        #expect(try udpd.counters("kdc").drops["upstream_error", default: 0] == 0)
    }

    @Test("with probe none, a failed upstream is up again after interval; old sessions stay where they moved")
    func upAgainAfterInterval() throws {
        let ports = try freePorts(3)
        var first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(port: ports[0], to: [first, second], healthCheck: "probe: none, interval: 1s")
        let old = try Clients(count: 1, to: ports[0])
        #expect(try old.round()[0].answer?.hasPrefix("A:") == true)
        first.stop()
        let stopped = ContinuousClock.now
        var moved = false
        for _ in 0..<5 where !moved {
            moved = try old.round()[0].answer?.hasPrefix("B:") == true
        }
        #expect(moved)
        first = try CountingUpstream(name: "A2", port: ports[1])
        #expect(try eventually(timeout: .seconds(3)) { try Self.upstreams(udpd)[0].state == "up" })
        #expect(ContinuousClock.now - stopped >= .milliseconds(900), "up again only after the interval")
        let fresh = try Clients(count: 1, to: ports[0])
        #expect(try fresh.round()[0].answer?.hasPrefix("A2:") == true, "a new session goes to the first upstream")
        #expect(try old.round()[0].answer?.hasPrefix("B:") == true, "an old session stays while its upstream is up")
        Self.expectNoDuplicates(first, second)
    }

    @Test("with no upstream up, datagrams count as no_upstream and TCP clients are closed within milliseconds")
    func noUpstreamUp() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(port: ports[0], to: [first, second], healthCheck: "probe: none, interval: 30s")
        first.stop()
        second.stop()
        let clients = try Clients(count: 2, to: ports[0], timeoutMilliseconds: 100)
        for _ in 0..<3 {
            for outcome in try clients.round() { #expect(outcome.answer == nil) }
        }
        #expect(try eventually { try Self.upstreams(udpd).allSatisfy { $0.state == "down" } })
        #expect(try eventually { try udpd.counters("kdc").drops["no_upstream", default: 0] >= 1 })
        let before = try udpd.counters("kdc").drops["no_upstream", default: 0]
        for _ in 0..<5 {
            let started = ContinuousClock.now
            let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
            #expect(tcp.isClosedByPeer())
            let elapsed = ContinuousClock.now - started
            #expect(elapsed < .milliseconds(250), "TCP client closed after \(elapsed)")
        }
        #expect(try eventually { try udpd.counters("kdc").drops["no_upstream", default: 0] >= before + 5 })
        let table = try udpd.udpctl(["status"]).standardOutput
        #expect(table.contains("none up"), "\(table)")
    }

    @Test("with dns probes, a silent first upstream is down within fall x interval and back after rise probes")
    func probesFindASilentUpstream() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(
            port: ports[0],
            to: [first, second],
            healthCheck: "probe: dns, interval: 200ms, timeout: 100ms, fall: 3, rise: 2"
        )
        #expect(
            try eventually {
                try Self.upstreams(udpd).allSatisfy { $0.state == "up" && $0.probeRoundTripMilliseconds != nil }
            },
            "both answer their probes"
        )
        let clients = try Clients(count: 4, to: ports[0])
        for outcome in try clients.round() { #expect(outcome.answer == "A:\(outcome.request)") }

        // A black hole: requests and probes still arrive, nothing is answered, no ICMP error tells udpd.
        first.isSilent = true
        let silenced = ContinuousClock.now
        var downAfter: Duration?
        var number = 0
        while downAfter == nil, ContinuousClock.now - silenced < .seconds(5) {
            // Traffic runs meanwhile (requests the silent upstream swallows); status is polled every 20 ms.
            number += 1
            for (index, socket) in clients.sockets.enumerated() { try socket.send("req-silent-\(index)-\(number)") }
            if try Self.upstreams(udpd)[0].state == "down" { downAfter = ContinuousClock.now - silenced }
            usleep(20_000)
        }
        let detected = try #require(downAfter, "the silent upstream was never marked down")
        // Three failed probes, 200 ms apart, the last one waiting its 100 ms: never sooner than two intervals, and
        // within fall x interval + timeout (700 ms), with room for a loaded host.
        #expect(detected >= .milliseconds(400) && detected < .milliseconds(1500), "down after \(detected)")
        // Answers to requests that raced the transition, from the second upstream, are read and dropped here.
        for socket in clients.sockets {
            while let stale = socket.receiveText() { #expect(stale.hasPrefix("B:req-silent-")) }
        }
        for _ in 0..<3 {
            for outcome in try clients.round() { #expect(outcome.answer == "B:\(outcome.request)") }
        }

        first.isSilent = false
        let answering = ContinuousClock.now
        #expect(try eventually { try Self.upstreams(udpd)[0].state == "up" })
        let upAfter = ContinuousClock.now - answering
        #expect(upAfter < .seconds(2), "up after \(upAfter)")
        let failures = try Self.upstreams(udpd)[0].failures
        #expect(failures >= 3, "failed probes are failures: \(failures)")
        let fresh = try Clients(count: 1, to: ports[0])
        #expect(try fresh.round()[0].answer?.hasPrefix("A:") == true, "a new session goes to the first upstream")
        for outcome in try clients.round() {
            #expect(outcome.answer == "B:\(outcome.request)", "old sessions stay on the second while it is up")
        }
        Self.expectNoDuplicates(first, second)
        #expect(first.probes > 5 && second.probes > 5)
        let metrics = try PrometheusText.parse(try udpd.udpctl(["metrics"]).standardOutput)
        let rtt = metrics.value(
            "udpd_upstream_probe_rtt_seconds",
            ["service": "kdc", "upstream": "127.0.0.1:\(ports[2])"]
        )
        #expect(rtt != nil && rtt! < 0.1)
    }

    @Test("with dns probes, a refused upstream that comes back is up again after rise answered probes")
    func refusedThenBackWithProbes() throws {
        let ports = try freePorts(3)
        var first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(
            port: ports[0],
            to: [first, second],
            healthCheck: "probe: dns, interval: 300ms, timeout: 100ms, fall: 5, rise: 3"
        )
        first.stop()
        // Traffic finds the refusal at once, long before 5 probes would.
        let clients = try Clients(count: 2, to: ports[0])
        let stopped = ContinuousClock.now
        for outcome in try clients.round() { #expect(outcome.answer == "B:\(outcome.request)") }
        #expect(try Self.upstreams(udpd)[0].state == "down")
        #expect(ContinuousClock.now - stopped < .milliseconds(1000))
        first = try CountingUpstream(name: "A2", port: ports[1])
        let back = ContinuousClock.now
        #expect(try eventually { try Self.upstreams(udpd)[0].state == "up" })
        let upAfter = ContinuousClock.now - back
        // Three answered probes, 300 ms apart: at least two intervals.
        #expect(upAfter >= .milliseconds(500) && upAfter < .seconds(3), "up after \(upAfter)")
        #expect(first.probes >= 3)
        Self.expectNoDuplicates(first, second)
    }

    @Test("a reload that leaves the service alone keeps its upstreams' state; one that adds an upstream rebuilds it")
    func reloadKeepsOrRebuildsThePool() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let udpd = try Self.forward(
            port: ports[0],
            to: [first],
            healthCheck: "probe: dns, interval: 100ms, timeout: 50ms, fall: 2"
        )
        first.stop()
        #expect(try eventually { try Self.upstreams(udpd).map(\.state) == ["down"] }, "a lone upstream, probed")
        let clients = try Clients(count: 1, to: ports[0], timeoutMilliseconds: 100)
        #expect(try clients.round()[0].answer == nil)
        #expect(try udpd.counters("kdc").drops["no_upstream", default: 0] >= 1)

        // The same file again: the service is unchanged and keeps its state (still down).
        #expect(try udpd.udpctl(["reload"]).status == 0)
        #expect(try Self.upstreams(udpd).map(\.state) == ["down"])

        let list = "127.0.0.1:\(ports[1]), 127.0.0.1:\(ports[2])"
        try udpd.rewriteConfig(
            """
            services:
              kdc:
                handler: forward
                udp: \(ports[0])
                tcp: \(ports[0])
                upstream: [\(list)]
                health-check: {probe: dns, interval: 100ms, timeout: 50ms, fall: 2}
            """
        )
        #expect(try udpd.udpctl(["reload"]).status == 0)
        let rebuilt = try Self.upstreams(udpd)
        #expect(rebuilt.map(\.port) == [Int(ports[1]), Int(ports[2])], "\(rebuilt)")
        #expect(try eventually { try Self.upstreams(udpd).map(\.state) == ["down", "up"] })
        #expect(try clients.round()[0].answer?.hasPrefix("B:") == true)
        Self.expectNoDuplicates(first, second)
    }

    @Test("probes follow reloads: an upstream a reload removes is probed no more")
    func probesFollowReloads() throws {
        let ports = try freePorts(3)
        let first = try CountingUpstream(name: "A", port: ports[1])
        let second = try CountingUpstream(name: "B", port: ports[2])
        let check = "probe: dns, interval: 50ms, timeout: 20ms"
        let udpd = try Self.forward(port: ports[0], to: [first, second], healthCheck: check)
        #expect(eventually { first.probes >= 3 && second.probes >= 3 })
        try udpd.rewriteConfig(
            """
            services:
              kdc:
                handler: forward
                udp: \(ports[0])
                upstream: [127.0.0.1:\(ports[2])]
                health-check: {\(check)}
            """
        )
        #expect(try udpd.udpctl(["reload"]).status == 0)
        usleep(200_000)  // a probe already in flight at the reload may still arrive
        let removed = first.probes
        let kept = second.probes
        usleep(500_000)
        #expect(first.probes == removed, "the removed upstream is still probed")
        #expect(second.probes >= kept + 5, "the kept upstream is probed by the new pool")
        #expect(try Self.upstreams(udpd).map(\.port) == [Int(ports[2])])
    }

    @Test("a TCP connect that times out marks the first upstream down and goes on to the second, once")
    func timedOutConnectFailsOver() throws {
        let ports = try freePorts(3)
        // The first upstream accepts no connection: a listener with a backlog of 0 whose one queued connection is
        // never accepted, so that the kernel drops every further SYN and udpd's connect times out (5 s).
        let silent = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_STREAM.rawValue), context: "silent")
        try silent.bind(to: IPEndpoint(address: "127.0.0.1", port: ports[1])!, context: "silent upstream")
        guard listen(silent.rawValue, 0) == 0 else { throw TestFailure("listen: errno \(errno)") }
        let queued = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[1])!)
        defer { withExtendedLifetime(queued) {} }
        let second = try CountingUpstream(name: "B", port: ports[2])
        let list = "127.0.0.1:\(ports[1]), 127.0.0.1:\(ports[2])"
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: forward
                    tcp: \(ports[0])
                    upstream: [\(list)]
                """
        )
        try udpd.waitUntilReady()

        let started = ContinuousClock.now
        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!, timeoutMilliseconds: 9000)
        try tcp.send("req-tcp-1\n")
        #expect(String(decoding: tcp.receive(count: 12), as: UTF8.self) == "B:req-tcp-1\n")
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .seconds(4) && elapsed < .seconds(8), "answered after \(elapsed)")
        let states = try Self.upstreams(udpd)
        #expect(states.map(\.state) == ["down", "up"] && states[0].failures >= 1, "\(states)")
        #expect(try udpd.counters("kdc").drops["upstream_error", default: 0] == 1)

        // The next connection goes straight to the second upstream: no wait for the one that is down.
        let next = ContinuousClock.now
        let again = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try again.send("req-tcp-2\n")
        #expect(String(decoding: again.receive(count: 12), as: UTF8.self) == "B:req-tcp-2\n")
        #expect(ContinuousClock.now - next < .seconds(1))
        #expect(second.requests == ["req-tcp-1", "req-tcp-2"])
    }
}
