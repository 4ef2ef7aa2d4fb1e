import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Drops of the service named `name`, by reason.
func drops(_ udpd: UDPDProcess, _ name: String, _ reason: String) throws -> UInt64 {
    try udpd.status().services.first { $0.name == name }?.counters.drops[reason] ?? 0
}

@Suite("UDP limits drop only the offender, counted by reason", .serialized)
struct UDPLimitsTests {
    func start(_ settings: String) throws -> (UDPDProcess, UInt16) {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    udp: \(port)
                    workers: 2
                \(settings.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))
                """
        )
        try udpd.waitUntilReady()
        return (udpd, port)
    }

    @Test("max-datagram: a larger datagram is dropped as oversize, smaller ones are answered")
    func maxDatagram() throws {
        let (udpd, port) = try start("max-datagram: 100")
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: port)!,
            timeoutMilliseconds: 500
        )
        try client.send([UInt8](repeating: 0x41, count: 101))
        #expect(client.receive() == nil)
        try client.send([UInt8](repeating: 0x42, count: 100))
        #expect(client.receive() == [UInt8](repeating: 0x42, count: 100))
        #expect(try eventually { try drops(udpd, "echo", "oversize") == 1 })
    }

    @Test("deny and allow: a denied source is never answered, an allowed one is")
    func allowAndDeny() throws {
        try #require(hasSecondLoopbackAddress, "needs 127.0.0.2")
        let (udpd, port) = try start("allow: [127.0.0.0/8]\ndeny: [127.0.0.2/32]")
        let server = IPEndpoint(address: "127.0.0.1", port: port)!
        let denied = try ConnectedUDPClient(from: "127.0.0.2", to: server, timeoutMilliseconds: 500)
        let allowed = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        for index in 0..<5 {
            try denied.send("from a denied source \(index)")
        }
        #expect(denied.receive() == nil)
        try allowed.send("allowed")
        #expect(allowed.receiveText() == "allowed")
        #expect(try eventually { try drops(udpd, "echo", "denied") == 5 })
    }

    @Test("rate-limit: a flooding source is cut to its burst, another source and the service go on")
    func rateLimit() throws {
        try #require(hasSecondLoopbackAddress, "needs 127.0.0.2")
        let (udpd, port) = try start("rate-limit: {per-source: 2/s, burst: 5}")
        let server = IPEndpoint(address: "127.0.0.1", port: port)!
        let flooder = try ConnectedUDPClient(from: "127.0.0.2", to: server, timeoutMilliseconds: 300)
        let flood = 200
        for index in 0..<flood {
            try flooder.send("flood \(index)")
        }
        var answered = 0
        while flooder.receive() != nil { answered += 1 }
        // The burst, plus at most what the rate earns while the flood is sent.
        #expect(answered >= 5 && answered <= 8, "flooder got \(answered) answers")
        let other = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        for index in 0..<5 {
            try other.send("polite \(index)")
            #expect(other.receiveText() == "polite \(index)")
        }
        #expect(try eventually { try drops(udpd, "echo", "rate_limited") == UInt64(flood - answered) })
        #expect(udpd.isRunning)
    }

    @Test("a spoofed-source flood cannot grow the rate limiter: memory stays bounded")
    func rateLimiterMemoryIsBounded() throws {
        try #require(hasSecondLoopbackAddress, "needs all of 127/8 to be local")
        let (udpd, port) = try start("rate-limit: {per-source: 1/s, burst: 1}")
        let before = try residentKiB(udpd.pid)
        let server = IPEndpoint(address: "127.0.0.1", port: port)!
        // 40 000 distinct sources in 127.1.0.0/16, more than the table's 16 384 entries.
        for index in 0..<40_000 {
            let source = "127.1.\(index / 256).\(index % 256)"
            let client = try ConnectedUDPClient(from: source, to: server, timeoutMilliseconds: 1)
            try client.send("x")
            client.descriptor.close()
        }
        // The kernel may drop some when the host is busy; more than the table holds must have arrived.
        var received: UInt64 = 0
        for _ in 0..<50 {
            Thread.sleep(forTimeInterval: 0.2)
            let now = try udpd.status().services.first { $0.name == "echo" }?.counters.rxPackets ?? 0
            if now >= 40_000 || (now == received && now > 0) {
                received = now
                break
            }
            received = now
        }
        #expect(received > UInt64(16_384), "only \(received) datagrams arrived")
        let after = try residentKiB(udpd.pid)
        #expect(after - before < 8_192 * residentMemoryScale, "RSS grew from \(before) KiB to \(after) KiB")
    }
}

/// The resident set size of `pid` in KiB, from /proc.
func residentKiB(_ pid: Int32) throws -> Int {
    let status = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let value = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
    else { throw TestFailure("no VmRSS for \(pid)") }
    return value
}
