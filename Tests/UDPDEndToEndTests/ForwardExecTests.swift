import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("forward and exec", .serialized)
struct ForwardExecTests {
    @Test("a connected UDP client gets the forward's replies from the address it asked; max-sessions evicts the oldest")
    func forwardRepliesFromTheAddressAsked() throws {
        let ports = try freePorts(2)
        let echo = try startUpstreamEcho(udp: ports[0])
        defer { withExtendedLifetime(echo) {} }
        let udpd = try UDPDProcess(
            config: """
                services:
                  fwd:
                    handler: forward
                    udp: \(ports[1])
                    upstream: 127.0.0.1:\(ports[0])
                    max-sessions: 2
                """
        )
        try udpd.waitUntilReady()
        var targets = [("127.0.0.1", "127.0.0.1")]
        if hasSecondLoopbackAddress { targets.append(("127.0.0.1", "127.0.0.2")) }
        if hasIPv6Loopback { targets.append(("::1", "::1")) }
        for (source, destination) in targets {
            // A connected socket only accepts datagrams from the address it connected to.
            let client = try ConnectedUDPClient(from: source, to: IPEndpoint(address: destination, port: ports[1])!)
            try client.send("via \(destination)")
            #expect(client.receiveText() == "via \(destination)", "no reply from \(destination):\n\(udpd.log)")
        }
        // A reply is counted just after the kernel took it, so the client may see it a moment before status does.
        #expect(try eventually { try udpd.counters("fwd").txPackets == UInt64(targets.count) })
        let fwd = try udpd.counters("fwd")
        #expect(fwd.txPackets == UInt64(targets.count))
        #expect(fwd.drops["session_evicted"] == UInt64(max(0, targets.count - 2)), "\(fwd.drops)")
    }

    @Test("an unreachable upstream is counted and the service keeps serving other clients")
    func unreachableUpstream() throws {
        let ports = try freePorts(3)  // ports[2] stays closed: the upstream refuses
        let udpd = try UDPDProcess(
            config: """
                services:
                  dead:
                    handler: forward
                    udp: \(ports[0])
                    tcp: \(ports[0])
                    upstream: 127.0.0.1:\(ports[2])
                  echo:
                    handler: echo
                    udp: \(ports[1])
                """
        )
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: ports[0])!,
            timeoutMilliseconds: 300
        )
        for _ in 0..<3 {
            try client.send("anyone?")
            #expect(client.receive() == nil)
        }
        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        #expect(tcp.readsEndOfFile())
        let echo = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[1])!)
        try echo.send("still here")
        #expect(echo.receiveText() == "still here")
        #expect(try eventually { try udpd.counters("dead").drops["upstream_error", default: 0] >= 2 })
    }

    @Test("exec over UDP and TCP: the program answers, sees its environment, and inherits no descriptor of udpd")
    func execAnswers() throws {
        let ports = try freePorts(2)
        let udpd = try UDPDProcess(
            config: """
                services:
                  hello:
                    handler: exec
                    udp: \(ports[0])
                    tcp: \(ports[0])
                    command: [/bin/sh, -c, 'printf "%s %s %s|" "$UDPD_SERVICE" "$UDPD_PROTO" "$LOCAL_ADDR"; cat']
                  fds:
                    handler: exec
                    udp: \(ports[1])
                    command: [/bin/ls, /proc/self/fd]
                """
        )
        try udpd.waitUntilReady()
        let destination = hasSecondLoopbackAddress ? "127.0.0.2" : "127.0.0.1"
        let udp = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: destination, port: ports[0])!)
        try udp.send("ping")
        #expect(udp.receiveText() == "hello udp \(destination)|ping", "\(udpd.log)")

        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try tcp.send("over tcp")
        tcp.shutdownWrite()
        #expect(String(decoding: tcp.receive(count: 100), as: UTF8.self) == "hello tcp 127.0.0.1|over tcp")

        // ls's own directory descriptor is 3; anything more would be a leak from udpd.
        let fds = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[1])!)
        try fds.send("x")
        #expect(fds.receiveText() == "0\n1\n2\n3\n", "\(udpd.log)")
    }

    @Test("a program that hangs is killed at timeout; max-instances refuses the one too many; stderr is logged")
    func execLimits() throws {
        let ports = try freePorts(1)
        let udpd = try UDPDProcess(
            config: """
                services:
                  slow:
                    handler: exec
                    tcp: \(ports[0])
                    command: [/bin/sh, -c, 'echo started >&2; exec sleep 30']
                    timeout: 1s
                    max-instances: 1
                """
        )
        try udpd.waitUntilReady()
        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let started = ContinuousClock.now
        let first = try TCPTestClient(to: server, timeoutMilliseconds: 5000)
        #expect(eventually { udpd.log.contains("started") })
        let second = try TCPTestClient(to: server, timeoutMilliseconds: 5000)
        #expect(second.readsEndOfFile())
        #expect(ContinuousClock.now - started < .milliseconds(900), "the refusal waited for the first program")
        #expect(first.readsEndOfFile())
        let elapsed = ContinuousClock.now - started
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(4), "killed after \(elapsed)")
        let limited = try eventually {
            let slow = try udpd.counters("slow")
            return slow.drops["exec_timeout"] == 1 && slow.drops["instances_exceeded"] == 1
        }
        let drops = try udpd.counters("slow").drops
        #expect(limited, "\(drops)")
        #expect(udpd.log.contains("service=slow"))
        // The instance was given back: a new connection starts a program again.
        let third = try TCPTestClient(to: server, timeoutMilliseconds: 5000)
        #expect(eventually { udpd.log.components(separatedBy: "started").count == 3 })
        _ = third
    }
}
