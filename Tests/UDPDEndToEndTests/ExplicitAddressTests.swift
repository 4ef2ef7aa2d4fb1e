import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Explicit `bind:` addresses the host does not have are errors at their position in the file, at start and at
/// reload, unless `freebind: true`. (203.0.113.77 is a documentation address no host has; nothing is sent to it.)
@Suite("explicit bind addresses are checked against the host", .serialized)
struct ExplicitAddressTests {
    static let absent = "203.0.113.77"

    func config(port: UInt16, addresses: String, freebind: Bool = false) -> String {
        """
        services:
          echo:
            handler: echo
            udp: \(port)
            bind: [\(addresses)]
        \(freebind ? "    freebind: true\n" : "")
        """
    }

    @Test("udpd refuses to start on an address the host lacks, naming its line and column")
    func startFails() throws {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(config: config(port: port, addresses: "127.0.0.1, \(Self.absent)"))
        #expect(udpd.waitForExit() == 1)
        #expect(
            udpd.log.contains(
                "services.yaml:5:23: error: service 'echo': \(Self.absent) is not configured on this host"
            ),
            "\(udpd.log)"
        )
        #expect(udpd.log.contains("freebind: true"))
    }

    @Test("a reload that adds an address the host lacks is rejected with its position; the old listeners stay")
    func reloadIsRejected() throws {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(config: config(port: port, addresses: "127.0.0.1"))
        try udpd.waitUntilReady()
        try udpd.rewriteConfig(config(port: port, addresses: "127.0.0.1, \(Self.absent)"))
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 1)
        let output = result.standardOutput + result.standardError
        #expect(output.contains(":5:23: error: service 'echo': \(Self.absent) is not configured"), "\(output)")
        let status = try udpd.status()
        #expect(status.generation == 1)
        #expect(status.services[0].listeners.map(\.address) == ["127.0.0.1"])
    }

    @Test("127.0.0.2 needs no freebind on Linux: the kernel binds all of 127.0.0.0/8")
    func localRouteAddressesPass() throws {
        guard hasSecondLoopbackAddress else { return }
        let port = try probeFreePort()
        let udpd = try UDPDProcess(config: config(port: port, addresses: "127.0.0.2"))
        let status = try udpd.waitUntilReady()
        #expect(status.services[0].listeners.map(\.address) == ["127.0.0.2"])
    }
}
