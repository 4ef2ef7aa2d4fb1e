import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("descriptor limits")
struct DescriptorLimitTests {
    @Test("started with systemd's soft limit below its needs, udpd raises it to the hard limit and binds everything")
    func softLimitIsRaised() throws {
        let services = 300
        let ports = try freePorts(services)
        var yaml = "services:\n"
        for (index, port) in ports.enumerated() {
            yaml += "  echo-\(index): {handler: echo, udp: \(port), bind: [127.0.0.1], workers: 2}\n"
        }
        // 600 UDP sockets under a soft limit of 256, as systemd's 1024 would be for 1,000 services.
        let udpd = try UDPDProcess(config: yaml, launcher: ["/usr/bin/prlimit", "--nofile=256:4096"])
        let status = try udpd.waitUntilReady()
        #expect(status.services.count == services)
        let limits = try String(contentsOfFile: "/proc/\(udpd.pid)/limits", encoding: .utf8)
        let openFiles = limits.split(separator: "\n").first { $0.hasPrefix("Max open files") }
        let soft = openFiles?.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first
        #expect(soft == "4096", "\(openFiles ?? "no 'Max open files' line")")
        let last = IPEndpoint(address: "127.0.0.1", port: ports[services - 1])!
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: last)
        try client.send("the last service")
        #expect(client.receiveText() == "the last service")
    }
}
