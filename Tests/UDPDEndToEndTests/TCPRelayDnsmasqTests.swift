import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A real dnsmasq answering `*.example.test` on 127.0.0.1, TCP and UDP, on a free port; killed on deinit.
/// dnsmasq ends a TCP connection after 100 queries (its `TCP_MAX_QUERIES`), which is what these tests are about.
///
/// It runs as a daemon and is found by its pid file: in the foreground it would close the descriptor Foundation's
/// `Process` watches, which then waits for it forever and so never reaps any other child of the test.
final class Dnsmasq {
    static let path = "/usr/sbin/dnsmasq"
    static var isInstalled: Bool { FileManager.default.isExecutableFile(atPath: path) }

    let endpoint: IPEndpoint
    private let directory: TemporaryDirectory
    private var pid: pid_t = 0

    init() throws {
        let port = try probeFreePort()
        endpoint = IPEndpoint(address: "127.0.0.1", port: port)!
        directory = try TemporaryDirectory()
        let pidFile = directory.file("dnsmasq.pid")
        let started = try runCommand(
            Self.path,
            [
                "--port=\(port)", "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                "--address=/example.test/192.0.2.1", "--pid-file=\(pidFile)", "--conf-file=/dev/null",
                "--log-facility=\(directory.file("dnsmasq.log"))", "--user=root",
            ],
            timeout: 10
        )
        guard started.status == 0 else { throw TestFailure("dnsmasq did not start: \(started.standardError)") }
        let ready = eventually(timeout: .seconds(10)) {
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
            else { return false }
            self.pid = pid
            guard let client = try? TCPTestClient(to: endpoint) else { return false }
            client.descriptor.close()
            return true
        }
        guard ready else { throw TestFailure("dnsmasq did not start listening on \(endpoint)") }
    }

    deinit {
        // SIGKILL: dnsmasq inherits the test thread's blocked signals and would never act on a SIGTERM.
        if pid > 0 { kill(pid, SIGKILL) }
    }
}

/// DNS over TCP (RFC 1035 4.2.2): each message is preceded by its length in two bytes.
enum DNSOverTCP {
    /// A query for `name` type A, with `id`, framed.
    static func query(id: UInt16, name: String) -> [UInt8] {
        var message: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]
        for label in name.split(separator: ".") {
            message.append(UInt8(label.utf8.count))
            message.append(contentsOf: label.utf8)
        }
        message += [0, 0, 1, 0, 1]
        return [UInt8(message.count >> 8), UInt8(message.count & 0xff)] + message
    }

    /// The IDs of the complete messages in `bytes`.
    static func answerIDs(_ bytes: [UInt8]) -> [UInt16] {
        var ids: [UInt16] = []
        var index = 0
        while index + 2 <= bytes.count {
            let length = Int(bytes[index]) << 8 | Int(bytes[index + 1])
            guard index + 2 + length <= bytes.count, length >= 2 else { break }
            ids.append(UInt16(bytes[index + 2]) << 8 | UInt16(bytes[index + 3]))
            index += 2 + length
        }
        return ids
    }
}

@Suite("TCP relay in front of a real dnsmasq: the same queries answered and lost as directly", .serialized)
struct TCPRelayDnsmasqTests {
    func relay(to upstream: IPEndpoint) throws -> (UDPDProcess, IPEndpoint) {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  dns:
                    handler: forward
                    tcp: \(port)
                    upstream: 127.0.0.1:\(upstream.port)
                """
        )
        try udpd.waitUntilReady()
        return (udpd, IPEndpoint(address: "127.0.0.1", port: port)!)
    }

    /// Sends 150 queries at once on one connection and reads until the stream ends: the answers' IDs and the end.
    func pipeline(to server: IPEndpoint) throws -> ([UInt16], StreamEnd) {
        let client = try TCPTestClient(to: server, timeoutMilliseconds: 200)
        try client.send((0..<150).flatMap { DNSOverTCP.query(id: UInt16($0), name: "host\($0).example.test") })
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let fd = client.descriptor.rawValue
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got > 0 {
                received.append(contentsOf: buffer[0..<got])
            } else if got == 0 {
                return (DNSOverTCP.answerIDs(received), .endOfFile)
            } else if errno != EAGAIN && errno != EINTR {
                return (DNSOverTCP.answerIDs(received), errno == ECONNRESET ? .reset : .failed(errno: errno))
            }
        }
        return (DNSOverTCP.answerIDs(received), .timedOut)
    }

    @Test(
        "150 pipelined queries on one connection: through udpd the same 100 answers, then the end, as directly",
        .enabled(if: Dnsmasq.isInstalled, "dnsmasq is not installed (Debian: dnsmasq-base)")
    )
    func pipelinePastTheQueryLimit() throws {
        let dnsmasq = try Dnsmasq()
        let (udpd, server) = try relay(to: dnsmasq.endpoint)
        let direct = try pipeline(to: dnsmasq.endpoint)
        let relayed = try pipeline(to: server)
        #expect(direct.0 == Array(0..<100), "directly: \(direct.0.count) answers")
        #expect(relayed.0 == direct.0, "through udpd \(relayed.0.count) answers, directly \(direct.0.count)")
        // dnsmasq shuts its side down (FIN), then closes with queries unread (RST): whether a client's reads end
        // with end of file or the reset depends on timing, directly as through udpd; either way the stream ends.
        #expect(direct.1 == .endOfFile || direct.1 == .reset, "directly the stream ended with \(direct.1)")
        #expect(relayed.1 == .endOfFile || relayed.1 == .reset, "through udpd the stream ended with \(relayed.1)")
        withExtendedLifetime(udpd) {}
    }

    /// Sends 100 queries one at a time on one connection (dnsmasq's limit), reads to the end, then sends a 101st
    /// and, a moment later, a 102nd: the answers' count, the end, and whether the last write was refused.
    func oneAtATime(to server: IPEndpoint) throws -> [String] {
        let client = try TCPTestClient(to: server, timeoutMilliseconds: 200)
        let fd = client.descriptor.rawValue
        var answered = 0
        for id in 0..<100 {
            try client.send(DNSOverTCP.query(id: UInt16(id), name: "host\(id).example.test"))
            let length = client.receive(count: 2)
            guard length.count == 2 else { break }
            let body = client.receive(count: Int(length[0]) << 8 | Int(length[1]))
            if body.count >= 2 && Int(body[0]) << 8 | Int(body[1]) == id { answered += 1 }
        }
        let end = Stream.readToEnd(fd, timeout: .seconds(3)).end
        _ = try? client.send(DNSOverTCP.query(id: 100, name: "host100.example.test"))
        usleep(300_000)
        let refused = (try? client.send(DNSOverTCP.query(id: 101, name: "host101.example.test"))) == nil
        return ["\(answered) answered", "\(end)", refused ? "refused" : "accepted"]
    }

    @Test(
        "100 queries one at a time, then more: through udpd the same end and the same refusal as directly",
        .enabled(if: Dnsmasq.isInstalled, "dnsmasq is not installed (Debian: dnsmasq-base)")
    )
    func queriesAfterTheLimitAreRefused() throws {
        let dnsmasq = try Dnsmasq()
        let (udpd, server) = try relay(to: dnsmasq.endpoint)
        let direct = try oneAtATime(to: dnsmasq.endpoint)
        let relayed = try oneAtATime(to: server)
        #expect(direct == ["100 answered", "end of file", "refused"])
        #expect(relayed == direct, "through udpd: \(relayed), directly: \(direct)")
        #expect(try eventually { try drops(udpd, "dns", "upstream_reset") == 1 })
    }
}
