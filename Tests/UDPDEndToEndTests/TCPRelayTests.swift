import Foundation
import Synchronization
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// How a stream ended for the side that read it.
enum StreamEnd: Equatable, CustomStringConvertible {
    /// A read returned end of file (the peer sent FIN).
    case endOfFile
    /// A read failed with `ECONNRESET` (the peer sent RST).
    case reset
    /// Another read error.
    case failed(errno: Int32)
    /// Nothing ended within the time allowed.
    case timedOut

    var description: String {
        switch self {
        case .endOfFile: "end of file"
        case .reset: "ECONNRESET"
        case .failed(let code): "errno \(code)"
        case .timedOut: "no end within the timeout"
        }
    }
}

/// What a client saw on one connection: the bytes it read, then how the stream ended.
struct StreamOutcome: Equatable {
    var received: String
    var end: StreamEnd
}

/// The test protocol: requests and answers of 8 bytes each, numbered.
enum Pipeline {
    static let size = 8

    static func request(_ number: Int) -> String { "REQ" + String(format: "%05d", number) }
    static func answer(_ number: Int) -> String { "ANS" + String(format: "%05d", number) }
    static func answers(_ range: Range<Int>) -> String { range.map(answer).joined() }
}

/// Raw socket steps for the test servers and clients; all bounded in time.
enum Stream {
    /// Reads until end of file, a reset, an error, or `timeout` without an end (`SO_RCVTIMEO` must be set shorter).
    static func readToEnd(_ fd: CInt, timeout: Duration = .seconds(5)) -> StreamOutcome {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if got > 0 {
                received.append(contentsOf: buffer[0..<got])
                continue
            }
            let end: StreamEnd
            if got == 0 {
                end = .endOfFile
            } else if errno == EAGAIN || errno == EINTR {
                continue
            } else {
                end = errno == ECONNRESET ? .reset : .failed(errno: errno)
            }
            return StreamOutcome(received: String(decoding: received, as: UTF8.self), end: end)
        }
        return StreamOutcome(received: String(decoding: received, as: UTF8.self), end: .timedOut)
    }

    /// Reads exactly `count` bytes, or fewer if the stream ends or stalls.
    static func read(_ fd: CInt, count: Int) -> String {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: count)
        let deadline = ContinuousClock.now + .seconds(5)
        while received.count < count && ContinuousClock.now < deadline {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count - received.count, 0) }
            if got > 0 {
                received.append(contentsOf: buffer[0..<got])
            } else if got == 0 || (errno != EAGAIN && errno != EINTR) {
                break
            }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// Writes all of `text`; false when the connection refused it.
    @discardableResult
    static func write(_ fd: CInt, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes {
                send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent <= 0 { return false }
            offset += sent
        }
        return true
    }

    /// Waits until `count` bytes can be read without blocking (or `timeout` passes).
    static func waitForReadable(_ fd: CInt, count: Int, timeout: Duration = .seconds(5)) {
        let deadline = ContinuousClock.now + timeout
        var available: CInt = 0
        while ContinuousClock.now < deadline {
            if ioctl(fd, UInt(FIONREAD), &available) == 0 && available >= count { return }
            usleep(2_000)
        }
    }

    /// Closes `fd` with a reset (`SO_LINGER` {1, 0}).
    static func reset(_ fd: CInt) {
        var option = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}

/// A TCP server on 127.0.0.1 playing the upstream: it runs `script` on each connection it accepts, one after the
/// other, on a thread of its own, and keeps what each script reported. Stopped (and its socket closed) on deinit.
///
/// `Sendable`: the listening socket is immutable and the results and stop flag are synchronized.
final class ScriptedUpstream: Sendable {
    let endpoint: IPEndpoint
    private let listener: TCPListenerSocket
    private let stopped = Atomic<Bool>(false)
    private let done = Atomic<Bool>(false)
    private let results = Mutex<[String]>([])

    init(script: @escaping @Sendable (CInt) -> String) throws {
        listener = try TCPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: 0)!)
        endpoint = listener.localEndpoint
        let thread = Thread { [self] in self.serve(script) }
        thread.start()
    }

    /// What each script reported, in order.
    var reports: [String] { results.withLock { $0 } }

    /// Waits until `count` scripts have reported.
    func waitForReports(_ count: Int, timeout: Duration = .seconds(10)) -> [String] {
        _ = eventually(timeout: timeout) { reports.count >= count }
        return reports
    }

    private func serve(_ script: @Sendable (CInt) -> String) {
        let fd = listener.descriptor.rawValue
        while !stopped.load(ordering: .acquiring) {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 50) > 0 else { continue }
            let connection = accept(fd, nil, nil)
            guard connection >= 0 else { continue }
            var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            let report = script(connection)
            results.withLock { $0.append(report) }
        }
        done.store(true, ordering: .releasing)
    }

    deinit {
        stopped.store(true, ordering: .releasing)
        _ = eventually(timeout: .seconds(5)) { done.load(ordering: .acquiring) }
        listener.close()
    }
}

/// A client connection with short read timeouts, so that a read loop notices its deadline.
func connectClient(to server: IPEndpoint) throws -> TCPTestClient {
    try TCPTestClient(to: server, timeoutMilliseconds: 200)
}

@Suite(
    "TCP relay: the client sees what it would see directly when the upstream closes, resets or half-closes",
    .serialized
)
struct TCPRelayTests {
    /// udpd forwarding TCP to `upstream`, and the port it listens on.
    func relay(to upstream: IPEndpoint) throws -> (UDPDProcess, IPEndpoint) {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  relay:
                    handler: forward
                    tcp: \(port)
                    upstream: 127.0.0.1:\(upstream.port)
                """
        )
        try udpd.waitUntilReady()
        return (udpd, IPEndpoint(address: "127.0.0.1", port: port)!)
    }

    /// Runs `client` once against a fresh upstream directly and once through udpd; returns both outcomes, the
    /// upstream's reports of both runs, and the udpd that relayed (for its counters).
    func directAndRelayed<Outcome>(
        upstream script: @escaping @Sendable (CInt) -> String,
        client: (IPEndpoint) throws -> Outcome
    ) throws -> (direct: Outcome, relayed: Outcome, reports: ([String], [String]), udpd: UDPDProcess) {
        let directUpstream = try ScriptedUpstream(script: script)
        let direct = try client(directUpstream.endpoint)
        let directReports = directUpstream.waitForReports(1)
        let relayedUpstream = try ScriptedUpstream(script: script)
        let (udpd, server) = try relay(to: relayedUpstream.endpoint)
        let relayed = try client(server)
        let relayedReports = relayedUpstream.waitForReports(1)
        return (direct, relayed, (directReports, relayedReports), udpd)
    }

    @Test("an upstream that closes mid-pipeline after K answers: the client gets exactly the K answers, then the reset")
    func upstreamClosesMidPipeline() throws {
        let sent = 12
        let answered = 5
        let run = try directAndRelayed(
            upstream: { fd in
                // Like dnsmasq after its 100th query: answer K requests and close with the rest unread (a reset).
                Stream.waitForReadable(fd, count: sent * Pipeline.size)
                for number in 0..<answered {
                    _ = Stream.read(fd, count: Pipeline.size)
                    Stream.write(fd, Pipeline.answer(number))
                }
                close(fd)
                return "closed"
            },
            client: { server in
                let client = try connectClient(to: server)
                try client.send((0..<sent).map(Pipeline.request).joined())
                return Stream.readToEnd(client.descriptor.rawValue)
            }
        )
        #expect(run.direct == StreamOutcome(received: Pipeline.answers(0..<answered), end: .reset))
        #expect(run.relayed == run.direct, "through udpd the client saw \(run.relayed), directly \(run.direct)")
        #expect(try eventually { try drops(run.udpd, "relay", "upstream_reset") == 1 })
    }

    @Test("an upstream that ends after K answers: the client sees end of file, and a further request gets the reset")
    func upstreamEndsThenRefusesFurtherRequests() throws {
        let answered = 3
        let run = try directAndRelayed(
            upstream: { fd in
                for number in 0..<answered {
                    guard Stream.read(fd, count: Pipeline.size) == Pipeline.request(number) else { break }
                    Stream.write(fd, Pipeline.answer(number))
                }
                close(fd)
                return "closed"
            },
            client: { server in
                let client = try connectClient(to: server)
                let fd = client.descriptor.rawValue
                var received = ""
                for number in 0..<answered {
                    try client.send(Pipeline.request(number))
                    received += Stream.read(fd, count: Pipeline.size)
                }
                let end = Stream.readToEnd(fd, timeout: .seconds(3))
                // The server is gone: a further request is answered with a reset, which refuses the next write
                // (after end of file a read reports no reset; a write does).
                Stream.write(fd, Pipeline.request(answered))
                usleep(300_000)
                let next = Stream.write(fd, Pipeline.request(answered + 1)) ? "accepted" : "refused"
                return [received + end.received, "\(end.end)", next]
            }
        )
        #expect(run.direct == [Pipeline.answers(0..<answered), "end of file", "refused"])
        #expect(run.relayed == run.direct, "through udpd the client saw \(run.relayed), directly \(run.direct)")
        #expect(try eventually { try drops(run.udpd, "relay", "upstream_reset") == 1 })
    }

    @Test("an upstream that resets after its answer: the client gets the answer, then ECONNRESET")
    func upstreamResets() throws {
        let run = try directAndRelayed(
            upstream: { fd in
                _ = Stream.read(fd, count: Pipeline.size)
                Stream.write(fd, Pipeline.answer(0))
                Stream.reset(fd)
                return "reset"
            },
            client: { server in
                let client = try connectClient(to: server)
                try client.send(Pipeline.request(0))
                return Stream.readToEnd(client.descriptor.rawValue)
            }
        )
        #expect(run.direct == StreamOutcome(received: Pipeline.answer(0), end: .reset))
        #expect(run.relayed == run.direct, "through udpd the client saw \(run.relayed), directly \(run.direct)")
        #expect(try eventually { try drops(run.udpd, "relay", "upstream_reset") == 1 })
    }

    @Test("a client that resets: the upstream sees ECONNRESET, not an orderly end")
    func clientResets() throws {
        let run = try directAndRelayed(
            upstream: { fd in
                let request = Stream.read(fd, count: Pipeline.size)
                let end = Stream.readToEnd(fd)
                close(fd)
                return "\(request) then \(end.end)"
            },
            client: { server in
                let client = try connectClient(to: server)
                try client.send(Pipeline.request(0))
                usleep(100_000)
                Stream.reset(client.descriptor.release())
                return ()
            }
        )
        #expect(run.reports.0 == ["\(Pipeline.request(0)) then ECONNRESET"])
        #expect(run.reports.1 == run.reports.0, "through udpd the upstream saw \(run.reports.1)")
        #expect(try eventually { try drops(run.udpd, "relay", "client_reset") == 1 })
    }

    @Test("a client half-close: the upstream sees end of file and its answer still reaches the client")
    func clientHalfCloses() throws {
        let run = try directAndRelayed(
            upstream: { fd in
                let request = Stream.read(fd, count: Pipeline.size)
                let end = Stream.readToEnd(fd)
                Stream.write(fd, Pipeline.answer(0))
                close(fd)
                return "\(request) then \(end.end)"
            },
            client: { server in
                let client = try connectClient(to: server)
                try client.send(Pipeline.request(0))
                client.shutdownWrite()
                return Stream.readToEnd(client.descriptor.rawValue)
            }
        )
        #expect(run.direct == StreamOutcome(received: Pipeline.answer(0), end: .endOfFile))
        #expect(run.relayed == run.direct, "through udpd the client saw \(run.relayed), directly \(run.direct)")
        #expect(run.reports.1 == run.reports.0, "through udpd the upstream saw \(run.reports.1)")
        #expect(try drops(run.udpd, "relay", "upstream_reset") == 0)
        #expect(try drops(run.udpd, "relay", "client_reset") == 0)
    }
}
