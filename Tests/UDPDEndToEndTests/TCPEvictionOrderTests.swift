import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("max-connections evicts in accept order, whichever event loop serves a connection", .serialized)
struct TCPEvictionOrderTests {
    @Test("many connections at once: the ones left open are exactly the newest max-connections")
    func simultaneousConnectsEvictTheOldest() throws {
        let port = try probeFreePort()
        let limit = 8
        let total = 300
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    tcp: \(port)
                    max-connections: \(limit)
                """
        )
        try udpd.waitUntilReady()
        let server = IPEndpoint(address: "127.0.0.1", port: port)!
        // Blocking connects on loopback complete their handshake in order, so the kernel's accept queue holds them
        // in this order: the order "oldest" must follow. Three rounds, as a reordering shows in most but not all;
        // the previous round's clients close as the next round starts (evicted first if still open then).
        for round in 1...3 {
            let before = try drops(udpd, "echo", "connection_limit")
            var clients: [TCPTestClient] = []
            for _ in 0..<total { clients.append(try TCPTestClient(to: server, timeoutMilliseconds: 200)) }
            #expect(
                try eventually(timeout: .seconds(20)) {
                    try drops(udpd, "echo", "connection_limit") - before >= UInt64(total - limit)
                }
            )
            usleep(300_000)
            let open = clients.indices.filter { index in
                var byte: UInt8 = 0
                return recv(clients[index].descriptor.rawValue, &byte, 1, Int32(MSG_DONTWAIT)) < 0 && errno == EAGAIN
            }
            #expect(open == Array((total - limit)..<total), "round \(round): left open \(open)")
        }
    }
}
