import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A forward session's own UDP socket, connected to its upstream: a client socket, not a listener. Requests go out
/// on it without blocking; the worker pool serves it to receive what the upstream sends back.
///
/// Being connected, it receives only the upstream's datagrams, and an unreachable upstream shows as an error
/// (ECONNREFUSED) on it rather than being silent. Its source address is the one the kernel routes from.
///
/// `Sendable`: immutable, and the socket it holds is `Sendable`.
public struct UpstreamDatagramSocket: Sendable {
    /// The socket as the worker pool serves it; its reply source is ``ReplySource/bound``.
    let served: UDPListenerSocket

    /// The local address and port the kernel chose towards the upstream.
    public var localEndpoint: IPEndpoint { served.localEndpoint }

    /// Opens a non-blocking UDP socket connected to `upstream`. Throws EMFILE when the socket took one of the
    /// descriptors kept for udpd itself (``DescriptorTable/checkHeadroom(_:call:context:)``); the socket is closed
    /// with its last reference.
    public static func connect(to upstream: IPEndpoint) throws(SystemCallError) -> UpstreamDatagramSocket {
        let context = "udp upstream \(upstream)"
        let socket = try SocketDescriptor.open(
            family: upstream.family,
            type: CInt(SOCK_DGRAM.rawValue),
            context: context
        )
        try DescriptorTable.checkHeadroom(socket.rawValue, call: "socket", context: context)
        try setNonBlocking(socket.rawValue, true, context: context)
        try socket.connect(to: upstream, context: context)
        let local = try socket.localEndpoint(context: context)
        return UpstreamDatagramSocket(
            served: UDPListenerSocket(descriptor: socket, localEndpoint: local, replySource: .bound)
        )
    }

    /// Opens a non-blocking UDP socket bound to `client`'s own address and port (a transparent socket from
    /// `sockets`) and connected to `upstream`, so that the upstream sees the client as the source. Replies come
    /// back to it only when the host routes them to udpd (udpd.yaml(5) gives the `ip rule` and `ip route`).
    public static func connect(
        to upstream: IPEndpoint,
        from client: IPEndpoint,
        through sockets: TransparentSockets
    ) throws(SystemCallError) -> UpstreamDatagramSocket {
        let socket = try sockets.bound(to: client, towards: upstream, type: CInt(SOCK_DGRAM.rawValue))
        try socket.connect(to: upstream, context: "transparent udp upstream \(upstream) from \(client.unmappingIPv4)")
        return UpstreamDatagramSocket(
            served: UDPListenerSocket(descriptor: socket, localEndpoint: client.unmappingIPv4, replySource: .bound)
        )
    }

    /// Sends `payload` to the upstream without blocking. Returns `false` when the socket's send buffer is full
    /// (EAGAIN); throws for any other failure, such as ECONNREFUSED left by an earlier ICMP error.
    @inline(__always)
    public func send(_ payload: UnsafeRawBufferPointer) throws(SystemCallError) -> Bool {
        let fd = served.descriptor.rawValue
        let sent = try nonBlockingSystemCall("send") {
            #if canImport(Glibc)
            Glibc.send(fd, payload.baseAddress, payload.count, cudpd_msg_dontwait)
            #elseif canImport(Musl)
            Musl.send(fd, payload.baseAddress, payload.count, cudpd_msg_dontwait)
            #else
            Darwin.send(fd, payload.baseAddress, payload.count, cudpd_msg_dontwait)
            #endif
        }
        return sent != nil
    }

    /// Sends `header` and `payload` as one datagram (a PROXY protocol header before the request), gathered by one
    /// `sendmsg` from both buffers without copying; otherwise like ``send(_:)``.
    public func send(_ payload: UnsafeRawBufferPointer, after header: UnsafeRawBufferPointer) throws(SystemCallError)
        -> Bool
    {
        let fd = served.descriptor.rawValue
        var vectors = (
            iovec(iov_base: UnsafeMutableRawPointer(mutating: header.baseAddress), iov_len: header.count),
            iovec(iov_base: UnsafeMutableRawPointer(mutating: payload.baseAddress), iov_len: payload.count)
        )
        let sent = try withUnsafeMutableBytes(of: &vectors) { (vectorBytes) throws(SystemCallError) in
            var message = msghdr()
            message.msg_iov = vectorBytes.baseAddress!.assumingMemoryBound(to: iovec.self)
            message.msg_iovlen = 2
            return try nonBlockingSystemCall("sendmsg") { sendmsg(fd, &message, cudpd_msg_dontwait) }
        }
        return sent != nil
    }
}

extension UDPWorkerPool {
    /// Serves an upstream socket with `handler` (the upstream's replies), on the next thread in turn. Returns what
    /// ``retire(_:)`` needs to stop serving it.
    public func register(
        _ upstream: UpstreamDatagramSocket,
        handler: any DatagramHandler,
        counters: ListenerCounters
    ) throws(SystemCallError) -> UDPPoolRegistration {
        try register(upstream.served, handler: handler, counters: counters)
    }
}
