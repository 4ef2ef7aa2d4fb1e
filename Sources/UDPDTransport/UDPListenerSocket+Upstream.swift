import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension UDPListenerSocket {
    /// Opens a non-blocking UDP socket connected to `upstream`: a forward session's own socket.
    ///
    /// Being connected, it receives only the upstream's datagrams, and an unreachable upstream shows as an error
    /// (ECONNREFUSED) on it rather than being silent. Its source address is the one the kernel routes from; its reply
    /// source is ``ReplySource/bound``. Register it with ``UDPWorkerPool/register(_:handler:counters:)`` to serve
    /// what the upstream sends back.
    public static func connected(to upstream: IPEndpoint) throws(SystemCallError) -> UDPListenerSocket {
        let context = "udp upstream \(upstream)"
        let socket = try SocketDescriptor.open(
            family: upstream.family,
            type: CInt(SOCK_DGRAM.rawValue),
            context: context
        )
        try setNonBlocking(socket.rawValue, true, context: context)
        try socket.connect(to: upstream, context: context)
        let local = try socket.localEndpoint(context: context)
        return UDPListenerSocket(descriptor: socket, localEndpoint: local, replySource: .bound)
    }

    /// Sends `payload` on this connected socket without blocking. Returns `false` when the socket's send buffer is
    /// full (EAGAIN); throws for any other failure, such as ECONNREFUSED left by an earlier ICMP error.
    @inline(__always)
    public func sendConnected(_ payload: UnsafeRawBufferPointer) throws(SystemCallError) -> Bool {
        let fd = descriptor.rawValue
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
}
