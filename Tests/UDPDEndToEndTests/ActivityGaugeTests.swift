import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("status and metrics show what handlers hold open", .serialized)
struct ActivityGaugeTests {
    @Test("exec_instances counts running programs; forward_sessions counts sessions, also behind allow/deny")
    func gauges() throws {
        let (execPort, forwardPort, echoPort) = (try probeFreePort(), try probeFreePort(), try probeFreePort())
        let echo = try startUpstreamEcho(udp: echoPort)
        defer { withExtendedLifetime(echo) {} }
        let udpd = try UDPDProcess(
            config: """
                services:
                  slow:
                    handler: exec
                    tcp: \(execPort)
                    command: [/bin/sleep, "3"]
                  relay:
                    handler: forward
                    udp: \(forwardPort)
                    bind: [127.0.0.1]
                    upstream: 127.0.0.1:\(echoPort)
                    allow: [127.0.0.0/8]
                """
        )
        try udpd.waitUntilReady()
        let held = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: execPort)!)
        _ = held
        #expect(try eventually { try udpd.status().services.first { $0.name == "slow" }?.execInstances == 1 })
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: forwardPort)!)
        try client.send("via relay")
        #expect(client.receiveText() == "via relay")
        let status = try udpd.status()
        #expect(status.services.first { $0.name == "relay" }?.forwardSessions == 1)
        #expect(try echo.status().services.first { $0.name == "upstream-echo" }?.forwardSessions == nil)
        let metrics = try udpd.udpctl(["metrics"]).standardOutput
        #expect(metrics.contains("udpd_exec_instances{service=\"slow\"} 1"), "\(metrics)")
        #expect(metrics.contains("udpd_forward_sessions{service=\"relay\"} 1"), "\(metrics)")
    }
}
