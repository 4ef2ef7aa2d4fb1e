import Foundation
import Synchronization
import Testing
import UDPDTestSupport
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// `log-sessions: true` (issue 16): each session's log lines name the client, the local address it asked, the
/// upstream and the local port udpd used towards it, so that an upstream that records its peers' ports (as krb5kdc
/// does) can be matched to clients. The test upstreams record the port they saw, independently of udpd.
@Suite("log-sessions: session lines that match the upstream's view", .serialized)
struct SessionLogTests {
    /// A UDP and TCP upstream on 127.0.0.1 that answers every datagram and every line with itself and records the
    /// source port of each.
    final class PortRecordingUpstream: Sendable {
        let port: UInt16
        private let udp: SocketDescriptor
        private let tcp: SocketDescriptor
        private let seen = Mutex<[UInt16]>([])
        private let running = Atomic<Bool>(true)

        init(port: UInt16) throws {
            self.port = port
            let endpoint = IPEndpoint(address: "127.0.0.1", port: port)!
            udp = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_DGRAM.rawValue), context: "upstream")
            try udp.bind(to: endpoint, context: "upstream udp")
            tcp = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_STREAM.rawValue), context: "upstream")
            try tcp.bind(to: endpoint, context: "upstream tcp")
            guard listen(tcp.rawValue, 16) == 0 else { throw TestFailure("listen: errno \(errno)") }
            for fd in [udp.rawValue, tcp.rawValue] {
                var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            }
            Thread.detachNewThread { [self] in serveUDP() }
            Thread.detachNewThread { [self] in serveTCP() }
        }

        deinit { running.store(false, ordering: .relaxed) }

        /// The source ports seen, in order.
        var ports: [UInt16] { seen.withLock { $0 } }

        private func serveUDP() {
            var buffer = [UInt8](repeating: 0, count: 2048)
            while running.load(ordering: .relaxed) {
                var peer = sockaddr_in()
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                let got = buffer.withUnsafeMutableBytes { bytes in
                    withUnsafeMutablePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            recvfrom(udp.rawValue, bytes.baseAddress, bytes.count, 0, $0, &length)
                        }
                    }
                }
                guard got > 0 else { continue }
                seen.withLock { $0.append(UInt16(bigEndian: peer.sin_port)) }
                _ = buffer.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(udp.rawValue, bytes.baseAddress, got, 0, $0, length)
                        }
                    }
                }
            }
        }

        private func serveTCP() {
            while running.load(ordering: .relaxed) {
                var peer = sockaddr_in()
                var length = socklen_t(MemoryLayout<sockaddr_in>.size)
                let connection = withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { accept(tcp.rawValue, $0, &length) }
                }
                guard connection >= 0 else { continue }
                seen.withLock { $0.append(UInt16(bigEndian: peer.sin_port)) }
                var line: [UInt8] = []
                var byte: UInt8 = 0
                while recv(connection, &byte, 1, 0) == 1 {
                    line.append(byte)
                    if byte == UInt8(ascii: "\n") { break }
                }
                _ = line.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(connection)
            }
        }
    }

    static func forward(port: UInt16, to upstream: PortRecordingUpstream) throws -> UDPDProcess {
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: forward
                    udp: \(port)
                    tcp: \(port)
                    bind: [127.0.0.1]
                    upstream: 127.0.0.1:\(upstream.port)
                    log-sessions: true
                    timeout: 300ms
                """
        )
        try udpd.waitUntilReady()
        return udpd
    }

    /// The log lines saying `message`.
    static func lines(_ log: String, _ message: String) -> [Substring] {
        log.split(separator: "\n").filter { $0.contains(message) }
    }

    @Test("UDP: a session's opened line names the port the upstream saw; its closed line counts both ways")
    func udpSession() throws {
        let ports = try freePorts(2)
        let upstream = try PortRecordingUpstream(port: ports[1])
        let udpd = try Self.forward(port: ports[0], to: upstream)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        let source = try client.descriptor.localEndpoint(context: "client")
        for request in ["first", "second"] {
            try client.send(request)
            #expect(client.receiveText() == request)
        }
        let seen = upstream.ports
        #expect(seen.count == 2 && seen[0] == seen[1], "one session, one upstream port: \(seen)")
        let fields = [
            "client=\(source)", "local=\(server)", "upstream=127.0.0.1:\(ports[1])",
            "upstream_local_port=\(seen.first ?? 0)",
        ]
        // The session ends after its 300 ms timeout without traffic.
        #expect(eventually { Self.lines(udpd.log, "UDP session closed").count == 1 }, "\(udpd.log)")
        let opened = Self.lines(udpd.log, "UDP session opened")
        #expect(opened.count == 1 && fields.allSatisfy(opened[0].contains), "\(opened) lacks one of \(fields)")
        let closed = Self.lines(udpd.log, "UDP session closed")
        #expect(closed.count == 1 && (fields + ["requests=2", "replies=2"]).allSatisfy(closed[0].contains), "\(closed)")
    }

    @Test("a flood of sessions writes at most 200 lines a second; the next line says how many were left out")
    func floodIsRateLimited() throws {
        let ports = try freePorts(2)
        let upstream = try PortRecordingUpstream(port: ports[1])
        let udpd = try Self.forward(port: ports[0], to: upstream)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let started = ContinuousClock.now
        let clients = try (0..<400).map { _ in try ConnectedUDPClient(from: "127.0.0.1", to: server) }
        for client in clients { try client.send("x") }
        #expect(eventually { upstream.ports.count == 400 }, "the upstream saw \(upstream.ports.count) requests")
        let flooded = ContinuousClock.now - started
        usleep(1_200_000)
        let late = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        try late.send("late")
        #expect(late.receiveText() == "late")
        #expect(eventually { Self.lines(udpd.log, "suppressed=").count >= 1 }, "\(udpd.log.suffix(2000))")
        let lines = Self.lines(udpd.log, "UDP session")
        if flooded < .milliseconds(900) {
            // Everything before the late client fell in one second: 200 lines at most, then the late one.
            #expect(lines.count <= 201 + 1, "\(lines.count) lines")
        }
        let suppressed = lines.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("suppressed=") }.flatMap { Int($0.dropFirst(11)) }
        }
        #expect(suppressed.reduce(0, +) >= 200, "\(suppressed)")
    }

    @Test("TCP: an opened and a closed line, naming the port the upstream saw, with the bytes each way")
    func tcpRelay() throws {
        let ports = try freePorts(2)
        let upstream = try PortRecordingUpstream(port: ports[1])
        let udpd = try Self.forward(port: ports[0], to: upstream)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let client = try TCPTestClient(from: "127.0.0.1", to: server)
        let source = try client.descriptor.localEndpoint(context: "client")
        try client.send("hello, kdc\n")
        #expect(client.receive(count: 11) == Array("hello, kdc\n".utf8))
        #expect(client.readsEndOfFile())
        client.shutdownWrite()
        let seen = try #require(upstream.ports.last)
        let fields = [
            "client=\(source)", "local=\(server)", "upstream=127.0.0.1:\(ports[1])", "upstream_local_port=\(seen)",
        ]
        #expect(eventually { Self.lines(udpd.log, "TCP relay closed").count == 1 }, "\(udpd.log)")
        let opened = Self.lines(udpd.log, "TCP relay opened")
        #expect(opened.count == 1 && fields.allSatisfy(opened[0].contains), "\(opened) lacks one of \(fields)")
        let closed = Self.lines(udpd.log, "TCP relay closed")
        let counts = ["bytes_from_client=11", "bytes_to_client=11", "end=closed"]
        #expect(closed.count == 1 && (fields + counts).allSatisfy(closed[0].contains), "\(closed)")
    }
}
