import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A bound, listening TCP socket of one listener, before an event loop adopts it.
///
/// udpd binds TCP listeners itself, like UDP ones, so that every bind of a reload happens (and can fail) before
/// anything changes, and so that sockets handed over by systemd fit the same path.
public final class TCPListenerSocket: Sendable {
    /// The socket.
    public let descriptor: SocketDescriptor
    /// The address and port the socket is bound to (the real port when 0 was asked for).
    public let localEndpoint: IPEndpoint

    init(descriptor: SocketDescriptor, localEndpoint: IPEndpoint) {
        self.descriptor = descriptor
        self.localEndpoint = localEndpoint
    }

    /// The listen backlog of every TCP listener.
    public static let defaultBacklog: CInt = 4096

    /// Opens a TCP socket bound to `endpoint` and listening.
    ///
    /// The backlog is 4096 (the kernel caps it at net.core.somaxconn): a burst of connections larger than the
    /// accept queue overflows it, and each dropped handshake costs its client a one-second retransmission.
    ///
    /// SO_REUSEADDR is set, as every TCP server does, so that a restart does not wait for TIME_WAIT; on Linux and
    /// the BSDs it never lets two listening sockets share a port. SO_REUSEPORT is not set.
    public static func bind(
        _ endpoint: IPEndpoint,
        options: ListenerSocketOptions = ListenerSocketOptions(),
        backlog: CInt = TCPListenerSocket.defaultBacklog
    ) throws(BindError) -> TCPListenerSocket {
        func context() -> String { "tcp \(endpoint)" }
        do {
            #if canImport(Glibc)
            let streamType = CInt(SOCK_STREAM.rawValue)
            #else
            let streamType = SOCK_STREAM
            #endif
            let socket = try SocketDescriptor.open(family: endpoint.family, type: streamType, context: context())
            try socket.setOption(level: SOL_SOCKET, name: SO_REUSEADDR, value: 1, "SO_REUSEADDR \(context())")
            try UDPListenerSocket.applyCommon(options, to: socket, family: endpoint.family, context: context())
            try socket.bind(to: endpoint, context: context())
            let fd = socket.rawValue
            try systemCall("listen", context: context()) { listen(fd, backlog) }
            let local = try socket.localEndpoint(context: context())
            return TCPListenerSocket(descriptor: socket, localEndpoint: local)
        } catch {
            throw BindError(proto: "tcp", endpoint: endpoint, device: options.device, underlying: error)
        }
    }

    /// Closes the socket (unless an event loop has taken it over with ``SocketDescriptor/release()``).
    public func close() {
        descriptor.close()
    }
}
