import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Nothing that can wait stalls what must answer: a full send buffer on one socket stalls no other socket of its
/// worker thread.
@Suite("blocking work never stalls what must answer", .serialized)
struct NonBlockingTests {
    /// One service whose client sits behind a link that holds packets (a token bucket of 8 kbit/s in front of a
    /// veth), flooded until its socket's send buffer is full, and another service on every worker thread, answering
    /// on loopback. Before replies were sent with MSG_DONTWAIT, the thread serving the slow socket slept in
    /// sendmmsg, and every other socket it serves went unanswered for minutes.
    @Test(
        "a full send buffer stalls no other socket of its worker thread, and its unsent replies are counted",
        .enabled(if: isRoot, "skipped: network namespaces and tc need root")
    )
    func fullSendBufferStallsNothingElse() throws {
        let lab = try MultiHomedLab()
        let tc = try runCommand(
            "/usr/sbin/tc",
            [
                "-n", lab.server, "qdisc", "add", "dev", "eth1", "root", "tbf", "rate", "8kbit", "burst", "1600",
                "limit", "4000000",
            ]
        )
        #expect(tc.status == 0, "tc: \(tc.standardError)")
        // One listener per worker thread and one more: the pool places listeners on its threads in turn, so
        // whatever thread serves the slow socket also serves one of these.
        let fastPorts = try freePorts(UDPWorkerPool.defaultThreadCount + 1)
        let slowPort = try probeFreePort()
        let fastList = fastPorts.map(String.init).joined(separator: ", ")
        let udpd = try UDPDProcess(
            config: """
                services:
                  slow: {handler: echo, udp: \(slowPort), bind: ["10.201.1.1"], workers: 1}
                  fast: {handler: echo, udp: [\(fastList)], bind: ["127.0.0.1"], workers: 1}

                """,
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        let warmUp = try lab.client(lab.clientA, ["udp", "10.201.1.1", "\(slowPort)", "1", "0", "3000"], timeout: 10)
        #expect(warmUp.status == 0, "the slow service never answered: \(warmUp.standardOutput)\(warmUp.standardError)")

        // 20,000 datagrams of 200 bytes: the token bucket passes about 5 replies a second, so the slow socket's send
        // buffer (about 200 KiB of queued replies) is full long before the flood ends, and stays full for minutes.
        let flood = try lab.client(lab.clientA, ["flood", "10.201.1.1", "\(slowPort)", "20000", "200"], timeout: 20)
        #expect(flood.status == 0, "\(flood.standardOutput)\(flood.standardError)")
        #expect(
            eventually(timeout: .seconds(5)) { ((try? udpd.counters("slow").drops["send_buffer_full"]) ?? 0) > 0 },
            "no reply of the slow service was counted: \(String(describing: try? udpd.counters("slow")))"
        )

        for port in fastPorts {
            let started = ContinuousClock.now
            let exchange = try runCommand(
                "/usr/sbin/ip",
                [
                    "netns", "exec", lab.server, BuiltProducts.path("udpd-testclient"), "udp", "127.0.0.1", "\(port)",
                    "5", "0", "500",
                ],
                timeout: 10
            )
            #expect(
                exchange.status == 0,
                """
                port \(port), on the worker thread of a socket whose send buffer is full, stalled \
                (\(ContinuousClock.now - started)): \(exchange.standardOutput)\(exchange.standardError)
                """
            )
        }

        let slow = try udpd.counters("slow")
        #expect(slow.rxPackets > slow.txPackets, "\(slow)")
        #expect(slow.dropped >= slow.drops["send_buffer_full"] ?? 0)
        let metrics = try udpd.udpctl(["metrics"])
        #expect(
            metrics.standardOutput.split(separator: "\n").contains {
                $0.hasPrefix("udpd_dropped_total{") && $0.contains("reason=\"send_buffer_full\"")
                    && $0.contains("service=\"slow\"")
            },
            "\(metrics.standardOutput)"
        )
        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit(timeout: .seconds(15)) == 0, "\(udpd.log)")
    }
}
