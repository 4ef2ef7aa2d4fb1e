import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A TCP-only service shows its traffic: bytes from and to its clients, and its connections, in status (table and
/// JSON) and in metrics.
@Suite("TCP traffic in status", .serialized)
struct TCPTrafficTests {
    @Test("a TCP-only echo and a TCP-only forward count the bytes and connections of their clients")
    func tcpOnlyServicesShowTheirTraffic() throws {
        let ports = try freePorts(3)
        // The forward's upstream is another udpd: udpd never forwards to one of its own listeners.
        let upstream = try UDPDProcess(
            config: """
                services:
                  upstream-echo:
                    handler: echo
                    tcp: \(ports[2])
                    bind: [127.0.0.1]
                """
        )
        try upstream.waitUntilReady()
        defer { withExtendedLifetime(upstream) {} }
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    tcp: \(ports[0])
                    bind: [127.0.0.1]
                  fwd:
                    handler: forward
                    tcp: \(ports[1])
                    bind: [127.0.0.1]
                    upstream: 127.0.0.1:\(ports[2])
                """
        )
        try udpd.waitUntilReady()
        let size = 3000
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        for port in [ports[0], ports[1]] {
            for _ in 0..<2 {
                let client = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: port)!)
                try client.send(payload)
                #expect(client.receive(count: size) == payload, "port \(port):\n\(udpd.log)")
            }
        }
        for name in ["echo", "fwd"] {
            // Counted as the relay writes: the client may have its reply a moment before status has the count.
            #expect(try eventually { try udpd.counters(name).txBytes == UInt64(2 * size) }, "\(name)")
            let counters = try udpd.counters(name)
            #expect(counters.rxBytes == UInt64(2 * size), "\(name): \(counters)")
            #expect(counters.txBytes == UInt64(2 * size), "\(name): \(counters)")
            #expect(counters.tcpAccepted == 2, "\(name): \(counters)")
        }
        // The table a person reads shows the same bytes and connections, on the service's row.
        let table = try udpd.udpctl(["status"]).standardOutput
        let rows = table.split(separator: "\n")
        let header = try #require(rows.first { $0.hasPrefix("SERVICE") }).split(separator: " ").map(String.init)
        for name in ["echo", "fwd"] {
            let row = try #require(rows.first { $0.hasPrefix(name + " ") }, "\(table)").split(separator: " ")
            let cells = Dictionary(uniqueKeysWithValues: zip(header, row.map(String.init)))
            #expect(cells["RX-BYTES"] == "\(2 * size)", "\(table)")
            #expect(cells["TX-BYTES"] == "\(2 * size)", "\(table)")
            #expect(cells["CONNS"] == "2", "\(table)")
        }
        let metrics = try udpd.udpctl(["metrics"]).standardOutput
        #expect(metrics.contains("udpd_received_bytes_total{service=\"fwd\"} \(2 * size)"), "\(metrics)")
        #expect(metrics.contains("udpd_sent_bytes_total{service=\"echo\"} \(2 * size)"), "\(metrics)")
    }
}
