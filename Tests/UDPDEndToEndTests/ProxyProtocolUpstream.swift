import Foundation
import Synchronization
import UDPDTestSupport
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// A test upstream that expects a PROXY protocol v2 header (HAProxy's `proxy-protocol.txt`, 2.2) before every
/// datagram and at the start of every TCP connection, parses it independently of udpd's own encoder, records what it
/// says, and answers with what followed the header (so that a client sees its own request come back, as from an
/// echo server, unchanged by udpd). A datagram or connection without a valid header is recorded as malformed and
/// not answered.
final class ProxyProtocolUpstream: Sendable {
    /// What one header said.
    struct Header: Equatable, CustomStringConvertible {
        var transport: String  // "dgram" or "stream"
        var source: String  // "ADDRESS port"
        var destination: String

        var description: String { "\(transport) \(source) -> \(destination)" }
    }

    let endpoint: IPEndpoint
    private let udp: SocketDescriptor
    private let tcp: SocketDescriptor
    private let state = Mutex<(headers: [Header], malformed: Int)>(([], 0))
    private let running = Atomic<Bool>(true)
    private let threadsDone = Atomic<Int>(0)

    /// Binds UDP and TCP on `address`:`port` and starts serving.
    init(address: String, port: UInt16) throws {
        endpoint = IPEndpoint(address: address, port: port)!
        udp = try SocketDescriptor.open(family: endpoint.family, type: CInt(SOCK_DGRAM.rawValue), context: "proxy")
        try udp.bind(to: endpoint, context: "proxy upstream udp")
        tcp = try SocketDescriptor.open(family: endpoint.family, type: CInt(SOCK_STREAM.rawValue), context: "proxy")
        try tcp.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR")
        try tcp.bind(to: endpoint, context: "proxy upstream tcp")
        guard listen(tcp.rawValue, 16) == 0 else { throw TestFailure("listen: errno \(errno)") }
        for fd in [udp.rawValue, tcp.rawValue] {
            var timeout = timeval(tv_sec: 0, tv_usec: 50_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        Thread.detachNewThread { [self] in serveUDP() }
        Thread.detachNewThread { [self] in serveTCP() }
    }

    deinit { stop() }

    /// Every header received so far, in order.
    var headers: [Header] { state.withLock { $0.headers } }
    /// Datagrams and connections that came without a valid header.
    var malformed: Int { state.withLock { $0.malformed } }

    /// Stops serving and closes both sockets once its threads have ended.
    func stop() {
        guard running.exchange(false, ordering: .relaxed) else { return }
        let deadline = ContinuousClock.now + .seconds(2)
        while threadsDone.load(ordering: .relaxed) < 2, ContinuousClock.now < deadline { usleep(5_000) }
        udp.close()
        tcp.close()
    }

    /// Parses a header at the start of `bytes`: the header and its length, or `nil` when there is none.
    static func parse(_ bytes: [UInt8]) -> (header: Header, length: Int)? {
        let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
        guard bytes.count >= 16, Array(bytes[0..<12]) == signature, bytes[12] == 0x21 else { return nil }
        let length = Int(bytes[14]) << 8 | Int(bytes[15])
        guard bytes.count >= 16 + length else { return nil }
        let transport: String
        switch bytes[13] & 0x0F {
        case 1: transport = "stream"
        case 2: transport = "dgram"
        default: return nil
        }
        let addressSize: Int
        let family: Int32
        switch bytes[13] >> 4 {
        case 1: (addressSize, family) = (4, AF_INET)
        case 2: (addressSize, family) = (16, AF_INET6)
        default: return nil
        }
        guard length >= 2 * addressSize + 4 else { return nil }
        func text(_ offset: Int) -> String {
            var output = [CChar](repeating: 0, count: 64)
            let address = Array(bytes[offset..<(offset + addressSize)])
            _ = address.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &output, 64) }
            return String(decoding: output.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        func port(_ offset: Int) -> Int { Int(bytes[offset]) << 8 | Int(bytes[offset + 1]) }
        let ports = 16 + 2 * addressSize
        let header = Header(
            transport: transport,
            source: "\(text(16)) \(port(ports))",
            destination: "\(text(16 + addressSize)) \(port(ports + 2))"
        )
        return (header, 16 + length)
    }

    private func record(_ header: Header?) {
        state.withLock { state in
            if let header { state.headers.append(header) } else { state.malformed += 1 }
        }
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
            guard let (header, headerLength) = Self.parse(datagram) else {
                record(nil)
                continue
            }
            record(header)
            let answer = Array(datagram[headerLength...])
            _ = answer.withUnsafeBytes { bytes in
                withUnsafePointer(to: &peer) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, bytes.baseAddress, bytes.count, 0, $0, length)
                    }
                }
            }
        }
    }

    /// One connection at a time: reads the header, then echoes one line and closes.
    private func serveTCP() {
        defer { threadsDone.wrappingAdd(1, ordering: .relaxed) }
        while running.load(ordering: .relaxed) {
            let connection = accept(tcp.rawValue, nil, nil)
            guard connection >= 0 else { continue }
            defer { close(connection) }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            func read(_ count: Int) -> [UInt8] {
                var bytes: [UInt8] = []
                var byte: UInt8 = 0
                while bytes.count < count, recv(connection, &byte, 1, 0) == 1 { bytes.append(byte) }
                return bytes
            }
            var start = read(16)
            guard start.count == 16 else {
                record(nil)
                continue
            }
            start += read(Int(start[14]) << 8 | Int(start[15]))
            guard let (header, _) = Self.parse(start) else {
                record(nil)
                continue
            }
            record(header)
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while recv(connection, &byte, 1, 0) == 1 {
                line.append(byte)
                if byte == UInt8(ascii: "\n") { break }
            }
            _ = line.withUnsafeBytes { send(connection, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
    }
}
