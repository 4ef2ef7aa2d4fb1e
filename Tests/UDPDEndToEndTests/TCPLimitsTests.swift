import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("TCP limits close or refuse only the offending connection, counted by reason", .serialized)
struct TCPLimitsTests {
    func start(_ settings: String) throws -> (UDPDProcess, IPEndpoint) {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    tcp: \(port)
                \(settings.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))
                """
        )
        try udpd.waitUntilReady()
        return (udpd, IPEndpoint(address: "127.0.0.1", port: port)!)
    }

    /// Sends `text` and expects it back.
    func roundTrip(_ client: TCPTestClient, _ text: String) throws -> Bool {
        try client.send(text)
        return client.receive(count: text.utf8.count) == Array(text.utf8)
    }

    @Test("max-connections: at the limit the oldest connection is closed and the new one served")
    func maxConnectionsClosesTheOldest() throws {
        let (udpd, server) = try start("max-connections: 3")
        var clients: [TCPTestClient] = []
        for index in 0..<3 {
            let client = try TCPTestClient(to: server)
            #expect(try roundTrip(client, "client \(index)"))
            clients.append(client)
        }
        let fourth = try TCPTestClient(to: server)
        #expect(try roundTrip(fourth, "fourth"))
        #expect(clients[0].isClosedByPeer(), "the oldest connection was not closed")
        for index in 1..<3 { #expect(try roundTrip(clients[index], "still \(index)")) }
        #expect(try eventually { try drops(udpd, "echo", "connection_limit") == 1 })
        #expect(try udpd.status().services[0].counters.tcpActive == 3)
    }

    @Test("max-connections-per-source: one more from the same source is refused, other sources go on")
    func perSourceLimit() throws {
        try #require(hasSecondLoopbackAddress, "needs 127.0.0.2")
        let (udpd, server) = try start("max-connections-per-source: 2")
        let first = try TCPTestClient(from: "127.0.0.2", to: server)
        let second = try TCPTestClient(from: "127.0.0.2", to: server)
        #expect(try roundTrip(first, "a"))
        #expect(try roundTrip(second, "b"))
        let third = try TCPTestClient(from: "127.0.0.2", to: server)
        #expect(third.isClosedByPeer(), "a third connection from one source was served")
        let other = try TCPTestClient(from: "127.0.0.1", to: server)
        #expect(try roundTrip(other, "another source"))
        #expect(try roundTrip(first, "first still served"))
        #expect(try eventually { try drops(udpd, "echo", "source_limit") == 1 })
    }

    @Test("deny: a denied source's connection is closed before any handler runs")
    func denyTCP() throws {
        try #require(hasSecondLoopbackAddress, "needs 127.0.0.2")
        let (udpd, server) = try start("deny: [127.0.0.2/32]")
        let denied = try TCPTestClient(from: "127.0.0.2", to: server)
        #expect(denied.isClosedByPeer())
        let allowed = try TCPTestClient(from: "127.0.0.1", to: server)
        #expect(try roundTrip(allowed, "allowed"))
        #expect(try eventually { try drops(udpd, "echo", "denied") == 1 })
    }

    @Test("idle-timeout: a silent connection is closed, a talking one is kept")
    func idleTimeout() throws {
        let (udpd, server) = try start("idle-timeout: 400ms")
        let silent = try TCPTestClient(to: server, timeoutMilliseconds: 3000)
        let talking = try TCPTestClient(to: server)
        let clock = ContinuousClock()
        let start = clock.now
        for index in 0..<8 {
            #expect(try roundTrip(talking, "\(index)"))
            Thread.sleep(forTimeInterval: 0.1)
        }
        #expect(silent.isClosedByPeer())
        #expect(clock.now - start < .seconds(3))
        #expect(try roundTrip(talking, "still here"))
        #expect(try eventually { try drops(udpd, "echo", "idle_timeout") == 1 })
    }

    @Test("framing krb5: a frame over max-message or with the reserved bit closes its connection only")
    func maxMessage() throws {
        let (udpd, server) = try start("framing: krb5\nmax-message: 100")
        let good = try TCPTestClient(to: server)
        let frame: [UInt8] = [0, 0, 0, 5] + Array("hello".utf8)
        try good.send(frame)
        #expect(good.receive(count: frame.count) == frame)
        let tooLong = try TCPTestClient(to: server)
        try tooLong.send([0, 0, 0, 101])
        #expect(tooLong.isClosedByPeer())
        let reserved = try TCPTestClient(to: server)
        try reserved.send([0x80, 0, 0, 1, 0])
        #expect(reserved.isClosedByPeer())
        try good.send(frame)
        #expect(good.receive(count: frame.count) == frame)
        #expect(try eventually { try drops(udpd, "echo", "frame_too_long") == 1 })
        #expect(try drops(udpd, "echo", "frame_reserved_bit") == 1)
    }

    @Test("framing krb5: a message not complete within the 5 s request deadline closes the connection")
    func requestDeadline() throws {
        let (udpd, server) = try start("framing: krb5\nidle-timeout: 1m")
        let slow = try TCPTestClient(to: server, timeoutMilliseconds: 8000)
        let clock = ContinuousClock()
        let start = clock.now
        // Half a message, then a byte every second: never idle, never complete.
        try slow.send([0, 0, 0, 100, 1])
        let steady = try TCPTestClient(to: server)
        for _ in 0..<4 {
            Thread.sleep(forTimeInterval: 1)
            try? slow.send([2])
        }
        // Echo passes the bytes on as they come: read them back, then the end of the connection.
        #expect(slow.receive(count: 9).count == 9)
        #expect(slow.isClosedByPeer())
        let elapsed = clock.now - start
        #expect(elapsed > .seconds(4.5) && elapsed < .seconds(7), "closed after \(elapsed)")
        let frame: [UInt8] = [0, 0, 0, 1, 42]
        try steady.send(frame)
        #expect(steady.receive(count: frame.count) == frame)
        #expect(try eventually { try drops(udpd, "echo", "request_deadline") == 1 })
    }
}
