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
        descriptor = try SocketDescriptor.open(family: server.family, type: CInt(SOCK_DGRAM.rawValue), context: "client")
        try descriptor.bind(to: localEndpoint, context: "client")
        var timeout = timeval(tv_sec: timeoutMilliseconds / 1000, tv_usec: Int((timeoutMilliseconds % 1000) * 1000))
        setsockopt(descriptor.rawValue, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.server = server
        let fd = descriptor.rawValue
        _ = try server.withSockAddr { (address, length) throws(SystemCallError) in
            try systemCall("connect", context: "client") { connect(fd, address, length) }
        }
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
public func probeFreePort() throws -> UInt16 {
    for _ in 0..<50 {
        let udp = try UDPListenerSocket.bind(IPEndpoint.wildcard(.ipv4, port: 0))
        let port = udp.localEndpoint.port
        defer { udp.close() }
        var holders: [SocketDescriptor] = []
        defer { holders.forEach { $0.close() } }
        do {
            holders.append(try UDPListenerSocket.bind(.wildcard(.ipv6, port: port)).descriptor)
            holders.append(try TCPListenerSocket.bind(.wildcard(.ipv4, port: port)).descriptor)
            holders.append(try TCPListenerSocket.bind(.wildcard(.ipv6, port: port)).descriptor)
            return port
        } catch {
            continue
        }
    }
    throw TestFailure("no free port found")
}

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
