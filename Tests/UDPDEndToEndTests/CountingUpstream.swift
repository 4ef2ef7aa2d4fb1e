import Foundation
import Synchronization
import UDPDTestSupport
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// A test upstream on 127.0.0.1 that records every request it receives, over UDP and TCP, and answers each with
/// its own name: `A:req-1` for `req-1`. Anything that is not a test request (a health probe) is answered as a DNS
/// server would (the datagram back with its QR bit set), and counted apart.
///
/// ``stop()`` closes its sockets, so that its port refuses (ICMP port unreachable, TCP RST); ``isSilent`` makes it a
/// black hole: it still records what arrives and answers nothing. Its threads end within 50 ms of ``stop()``.
final class CountingUpstream: Sendable {
    let name: String
    let port: UInt16
    private let udp: SocketDescriptor
    private let tcp: SocketDescriptor
    private let state = Mutex(State())
    private let running = Atomic<Bool>(true)
    private let silent = Atomic<Bool>(false)
    private let threadsDone = Atomic<Int>(0)

    private let delay = Atomic<Int>(0)

    private struct State {
        var requests: [String] = []
        /// The source port of each UDP test request, in order.
        var ports: [UInt16] = []
        var probes = 0
    }

    /// Binds UDP and TCP on 127.0.0.1:`port` and starts serving.
    init(name: String, port: UInt16) throws {
        self.name = name
        self.port = port
        let endpoint = IPEndpoint(address: "127.0.0.1", port: port)!
        udp = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_DGRAM.rawValue), context: "upstream \(name)")
        try udp.bind(to: endpoint, context: "upstream \(name) udp")
        tcp = try SocketDescriptor.open(family: .ipv4, type: CInt(SOCK_STREAM.rawValue), context: "upstream \(name)")
        try tcp.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR")
        try tcp.bind(to: endpoint, context: "upstream \(name) tcp")
        guard listen(tcp.rawValue, 64) == 0 else { throw TestFailure("listen: errno \(errno)") }
        for fd in [udp.rawValue, tcp.rawValue] {
            var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        Thread.detachNewThread { [self] in serveUDP() }
        Thread.detachNewThread { [self] in serveTCP() }
    }

    deinit { stop() }

    /// The test requests received so far, in order of arrival.
    var requests: [String] { state.withLock { $0.requests } }

    /// The source port udpd's session socket used for each UDP test request, in order of arrival.
    var sourcePorts: [UInt16] { state.withLock { $0.ports } }

    /// How long UDP answers wait before they are sent (replies in flight during a reload); 0 by default.
    var replyDelay: Duration {
        get { .milliseconds(delay.load(ordering: .relaxed)) }
        set { delay.store(Int(newValue.saturatingNanoseconds / 1_000_000), ordering: .relaxed) }
    }

    /// The probes received so far.
    var probes: Int { state.withLock { $0.probes } }

    /// Whether it answers nothing (a black hole), while still recording what arrives.
    var isSilent: Bool {
        get { silent.load(ordering: .relaxed) }
        set { silent.store(newValue, ordering: .relaxed) }
    }

    /// Closes both sockets once its threads have ended: the port refuses from then on.
    func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while threadsDone.load(ordering: .relaxed) < 2, ContinuousClock.now < deadline { usleep(5_000) }
        udp.close()
        tcp.close()
    }

    private func record(_ text: String) {
        state.withLock { $0.requests.append(text) }
    }

    private func serveUDP() {
        defer { threadsDone.wrappingAdd(1, ordering: .relaxed) }
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let fd = udp.rawValue
        while running.load(ordering: .relaxed) {
            var peer = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let got = buffer.withUnsafeMutableBytes { bytes in
                withUnsafeMutablePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        recvfrom(fd, bytes.baseAddress, bytes.count, 0, $0, &length)
                    }
                }
            }
            guard got > 0 else { continue }
            let datagram = Array(buffer[0..<got])
            var answer: [UInt8]
            if datagram.starts(with: Array("req-".utf8)) {
                let text = String(decoding: datagram, as: UTF8.self)
                let port = withUnsafeBytes(of: peer) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) }
                state.withLock {
                    $0.requests.append(text)
                    $0.ports.append(port)
                }
                answer = Array("\(name):\(text)".utf8)
            } else {
                state.withLock { $0.probes += 1 }
                answer = datagram
                if answer.count > 2 { answer[2] |= 0x80 }
            }
            guard !silent.load(ordering: .relaxed) else { continue }
            let send: @Sendable () -> Void = { [answer, peer, length] in
                var peer = peer
                _ = answer.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &peer) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                            sendto(fd, bytes.baseAddress, bytes.count, 0, $0, length)
                        }
                    }
                }
            }
            let wait = delay.load(ordering: .relaxed)
            if wait > 0 {
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(wait), execute: send)
            } else {
                send()
            }
        }
    }

    /// One connection at a time: reads one line, records it, answers `NAME:line\n` and closes.
    private func serveTCP() {
        defer { threadsDone.wrappingAdd(1, ordering: .relaxed) }
        while running.load(ordering: .relaxed) {
            let connection = accept(tcp.rawValue, nil, nil)
            guard connection >= 0 else { continue }
            defer { close(connection) }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while recv(connection, &byte, 1, 0) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
            let text = String(decoding: line, as: UTF8.self)
            record(text)
            guard !silent.load(ordering: .relaxed) else { continue }
            let answer = Array("\(name):\(text)\n".utf8)
            _ = answer.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }
}
