import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension UDPListenerSocket {
    /// Adopts a bound UDP socket udpd did not open (one systemd handed over) as a listener's socket.
    ///
    /// Marks it close-on-exec and, on a wildcard address, enables IP_PKTINFO / IP_RECVDSTADDR / IPV6_RECVPKTINFO
    /// exactly as ``bind(_:options:)`` does, so that its replies leave from the address each request was sent to.
    /// Options that must precede `bind` (freebind, the device) are the socket unit's business.
    public static func adopt(
        _ socket: SocketDescriptor,
        options: ListenerSocketOptions = ListenerSocketOptions()
    ) throws(BindError) -> UDPListenerSocket {
        let context = "inherited udp fd \(socket.rawValue)"
        let local: IPEndpoint
        do {
            local = try socket.localEndpoint(context: context)
        } catch {
            throw BindError(proto: "udp", endpoint: .wildcard(.ipv4, port: 0), underlying: error)
        }
        do {
            try markCloseOnExec(socket, context: context)
            let replySource = enableDestinationInfo(on: socket, for: local, options: options, context: context)
            return UDPListenerSocket(descriptor: socket, localEndpoint: local, replySource: replySource)
        } catch {
            throw BindError(proto: "udp", endpoint: local, underlying: error)
        }
    }

    /// Opens `count` more sockets on `first`'s address and port with SO_REUSEPORT, joining its group; `first` must
    /// have SO_REUSEPORT set. Closes what it opened if any fails.
    public static func join(
        _ first: UDPListenerSocket,
        count: Int,
        options: ListenerSocketOptions = ListenerSocketOptions()
    ) throws(BindError) -> [UDPListenerSocket] {
        var joined: [UDPListenerSocket] = []
        do {
            for _ in 0..<max(0, count) {
                joined.append(try bind(first.localEndpoint, options: options, reusePort: true))
            }
        } catch {
            joined.forEach { $0.close() }
            throw error
        }
        return joined
    }

    static func markCloseOnExec(_ socket: SocketDescriptor, context: String) throws(SystemCallError) {
        let fd = socket.rawValue
        try systemCall("fcntl", context: "FD_CLOEXEC \(context)") { fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }
}

extension TCPListenerSocket {
    /// Adopts a bound TCP socket udpd did not open (one systemd handed over) as a listener's socket.
    ///
    /// Marks it close-on-exec and, if it is not listening yet, makes it listen with `backlog`.
    public static func adopt(_ socket: SocketDescriptor, backlog: CInt = 511) throws(BindError) -> TCPListenerSocket {
        let context = "inherited tcp fd \(socket.rawValue)"
        let local: IPEndpoint
        do {
            local = try socket.localEndpoint(context: context)
        } catch {
            throw BindError(proto: "tcp", endpoint: .wildcard(.ipv4, port: 0), underlying: error)
        }
        do {
            try UDPListenerSocket.markCloseOnExec(socket, context: context)
            if try socket.option(level: SOL_SOCKET, name: SO_ACCEPTCONN, "SO_ACCEPTCONN \(context)") == 0 {
                let fd = socket.rawValue
                try systemCall("listen", context: context) { listen(fd, backlog) }
            }
            return TCPListenerSocket(descriptor: socket, localEndpoint: local)
        } catch {
            throw BindError(proto: "tcp", endpoint: local, underlying: error)
        }
    }
}
