import Foundation
import Synchronization
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A test failure with a message.
public struct TestFailure: Error, CustomStringConvertible {
    /// What went wrong.
    public var description: String

    /// Creates a failure.
    public init(_ description: String) {
        self.description = description
    }
}

/// A UDP client socket that is bound to a local address and `connect()`ed to the server, as MIT Kerberos clients
/// are: the kernel delivers it only datagrams whose source is exactly the address it connected to.
public final class ConnectedUDPClient {
    /// The socket.
    public let descriptor: SocketDescriptor
    /// Where it sends.
    public let server: IPEndpoint

    /// Binds to `local` (port 0) and connects to `server`; replies wait at most `timeout` milliseconds.
    public init(from local: String, to server: IPEndpoint, timeoutMilliseconds: Int = 2000) throws {
        let localEndpoint = IPEndpoint(address: local, port: 0)!
        descriptor = try SocketDescriptor.open(
            family: server.family,
            type: CInt(SOCK_DGRAM.rawValue),
            context: "client"
        )
        try descriptor.bind(to: localEndpoint, context: "client")
        var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: Int((timeoutMilliseconds % 1000) * 1000))
        setsockopt(descriptor.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.server = server
        try descriptor.connect(to: server, context: "client")
    }

    /// Sends one datagram.
    public func send(_ bytes: [UInt8]) throws {
        let fd = descriptor.rawValue
        _ = try systemCall("send") { bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }
    }

    /// Sends a string.
    public func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    /// Waits for one datagram from the server; `nil` when none came within the timeout.
    public func receive(maximum: Int = 65_536) -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: maximum)
        let fd = descriptor.rawValue
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { return nil }
        return Array(buffer[0..<count])
    }

    /// Waits for one datagram and decodes it as UTF-8.
    public func receiveText() -> String? {
        receive().map { String(decoding: $0, as: UTF8.self) }
    }
}

/// Finds a port that is free for UDP and TCP on both wildcard addresses at the moment of asking.
///
/// The port is drawn below the kernel's ephemeral range (`net.ipv4.ip_local_port_range`): a port from inside it
/// may be taken, between this probe and the daemon's bind, as the source port of any connection a parallel test
/// opens (one test holds 5,000), which made a daemon under test fail with "port already in use". Every port is
/// handed out once per test process: tests run in parallel, and a port probed free, closed and then probed again
/// by another test before the first one binds it would make both use it.
public func probeFreePort() throws -> UInt16 {
    let candidates = portsOutsideEphemeralRange
    for _ in 0..<500 {
        let port = UInt16.random(in: candidates)
        guard handedOutPorts.withLock({ $0.insert(port).inserted }) else { continue }
        var holders: [SocketDescriptor] = []
        defer { holders.forEach { $0.close() } }
        do {
            holders.append(try UDPListenerSocket.bind(.wildcard(.ipv4, port: port)).descriptor)
            holders.append(try UDPListenerSocket.bind(.wildcard(.ipv6, port: port)).descriptor)
            holders.append(try TCPListenerSocket.bind(.wildcard(.ipv4, port: port)).descriptor)
            holders.append(try TCPListenerSocket.bind(.wildcard(.ipv6, port: port)).descriptor)
            return port
        } catch {
            continue
        }
    }
    throw TestFailure("no free port found in \(candidates)")
}

/// Unprivileged ports the kernel never picks as a source port: those below the ephemeral range, up to 16,384 of
/// them (10000-32767 with Linux's default range of 32768-60999).
private let portsOutsideEphemeralRange: ClosedRange<UInt16> = {
    let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
    let ephemeralLow = text.split(whereSeparator: \.isWhitespace).first.flatMap { UInt16($0) } ?? 32768
    let high = max(ephemeralLow, 2048) - 1
    return max(1024, high > 16383 ? high - 16383 : 0)...high
}()
/// Ports ``probeFreePort()`` has returned in this process.
private let handedOutPorts = Mutex<Set<UInt16>>([])

/// Whether the tests run as root (network namespaces, privileged ports).
public var isRoot: Bool { geteuid() == 0 }

/// Whether 127.0.0.2 can be used as a local address (it can on Linux, where all of 127/8 is local).
public var hasSecondLoopbackAddress: Bool {
    (try? UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.2", port: 0)!))?.close() != nil
}

/// Whether ::1 can be bound (hosts without IPv6 skip IPv6 tests).
public var hasIPv6Loopback: Bool {
    (try? UDPListenerSocket.bind(IPEndpoint(address: "::1", port: 0)!))?.close() != nil
}

/// A blocking TCP client for tests.
public final class TCPTestClient {
    /// The socket.
    public let descriptor: SocketDescriptor

    /// Connects to `server`, from `local` (port 0) when given; reads wait at most `timeoutMilliseconds`.
    public init(from local: String? = nil, to server: IPEndpoint, timeoutMilliseconds: Int = 2000) throws {
        descriptor = try SocketDescriptor.open(
            family: server.family,
            type: CInt(SOCK_STREAM.rawValue),
            context: "tcp client"
        )
        if let local {
            try descriptor.bind(to: IPEndpoint(address: local, port: 0)!, context: "tcp client")
        }
        var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: Int((timeoutMilliseconds % 1000) * 1000))
        setsockopt(descriptor.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        try descriptor.connect(to: server, context: "tcp client \(server)")
    }

    /// Writes all of `bytes`.
    public func send(_ bytes: [UInt8]) throws {
        let fd = descriptor.rawValue
        var offset = 0
        while offset < bytes.count {
            let written = try systemCall("send") {
                bytes.withUnsafeBytes {
                    Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
                }
            }
            offset += written
        }
    }

    /// Writes a string.
    public func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Reads until `count` bytes arrived, the peer closed, or the timeout passed.
    public func receive(count: Int) -> [UInt8] {
        var result: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let fd = descriptor.rawValue
        while result.count < count {
            let got = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - result.count), 0) }
            if got < 0 && errno == EINTR { continue }
            if got <= 0 { break }
            result.append(contentsOf: buffer[0..<got])
        }
        return result
    }

    /// Whether the peer closed the connection (a read returns end of file within the timeout).
    public func readsEndOfFile() -> Bool {
        var byte: UInt8 = 0
        return recv(descriptor.rawValue, &byte, 1, 0) == 0
    }

    /// Whether the peer closed or reset the connection (a read ends within the timeout without data).
    public func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        let got = recv(descriptor.rawValue, &byte, 1, 0)
        return got == 0 || (got < 0 && errno == ECONNRESET)
    }

    /// Closes the writing half (the server sees end of input).
    public func shutdownWrite() {
        shutdown(descriptor.rawValue, Int32(SHUT_WR))
    }
}

/// Whether anything accepts TCP connections or holds UDP `port` on `address` right now.
public func isPortFree(_ address: String, _ port: UInt16, proto: String) -> Bool {
    let endpoint = IPEndpoint(address: address, port: port)!
    if proto == "tcp" {
        guard let socket = try? TCPListenerSocket.bind(endpoint) else { return false }
        socket.close()
        return true
    }
    guard let socket = try? UDPListenerSocket.bind(endpoint) else { return false }
    socket.close()
    return true
}

/// A Unix datagram socket that plays systemd's NOTIFY_SOCKET.
public final class UnixDatagramListener {
    private let fd: CInt

    /// Binds `path`; reads wait at most `timeoutMilliseconds`.
    public init(path: String, timeoutMilliseconds: Int = 5000) throws {
        fd = socket(AF_UNIX, CInt(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else { throw TestFailure("cannot bind \(path)") }
        var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: Int((timeoutMilliseconds % 1000) * 1000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The next datagram as text, or `nil` after the timeout.
    public func receive() -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    deinit { close(fd) }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held. Counters are updated
/// right after a reply is sent, so a test that just received the reply may see them a moment later.
public func eventually(timeout: Duration = .seconds(5), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(10_000)
    }
    return try condition()
}

/// `count` free ports, all different (``probeFreePort()`` never hands out a port twice).
public func freePorts(_ count: Int) throws -> [UInt16] {
    try (0..<count).map { _ in try probeFreePort() }
}
