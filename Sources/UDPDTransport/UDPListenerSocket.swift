import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How a listener's socket, UDP or TCP, is opened before it is bound.
public struct ListenerSocketOptions: Sendable, Hashable {
    /// Bind even if the address is not configured on the host (IP_FREEBIND / IPV6_FREEBIND).
    public var freebind: Bool
    /// Bind the socket to this network device (SO_BINDTODEVICE), where the platform has it.
    public var device: String?
    /// UDP only: do not enable IP_PKTINFO / IP_RECVDSTADDR / IPV6_RECVPKTINFO: a testing aid that reproduces a platform
    /// without them, so that the `kernel` reply source and its fallbacks can be exercised.
    public var withoutDestinationInfo: Bool
    /// Leave IPV6_V6ONLY off on an IPv6 socket, so that it takes IPv4 too: only for sockets joining the
    /// SO_REUSEPORT group of an adopted dual-stack socket, which must match it.
    public var dualStack = false

    /// Creates options; the defaults are what every listener wants.
    public init(freebind: Bool = false, device: String? = nil, withoutDestinationInfo: Bool = false) {
        self.freebind = freebind
        self.device = device
        self.withoutDestinationInfo = withoutDestinationInfo
    }
}

/// A bound UDP socket of one listener, and how its replies find their source address.
///
/// On a wildcard address the socket asks the kernel for each datagram's destination address (IP_PKTINFO,
/// IP_RECVDSTADDR or IPV6_RECVPKTINFO) so that every reply can name it as its source. Whether that is needed is
/// decided once, here, rather than with a `getsockname` per request.
public final class UDPListenerSocket: Sendable {
    /// The socket.
    public let descriptor: SocketDescriptor
    /// The address and port the socket is bound to (the real port when 0 was asked for).
    public let localEndpoint: IPEndpoint
    /// How replies leave from the right address.
    public let replySource: ReplySource

    init(descriptor: SocketDescriptor, localEndpoint: IPEndpoint, replySource: ReplySource) {
        self.descriptor = descriptor
        self.localEndpoint = localEndpoint
        self.replySource = replySource
    }

    /// Opens a UDP socket bound to `endpoint`.
    ///
    /// Neither SO_REUSEADDR nor SO_REUSEPORT is set, so a port that any other socket holds fails with
    /// ``BindError/Code/addressInUse`` instead of being silently shared.
    public static func bind(
        _ endpoint: IPEndpoint,
        options: ListenerSocketOptions = ListenerSocketOptions()
    )
        throws(BindError) -> UDPListenerSocket
    {
        try bind(endpoint, options: options, reusePort: false)
    }

    /// Opens `count` UDP sockets on the same address and port, one per worker thread.
    ///
    /// With more than one, they form a SO_REUSEPORT group so that the kernel spreads datagrams over them. So that
    /// the group never silently shares the port with another process, the port is first bound without
    /// SO_REUSEPORT: if anyone holds it, that fails with ``BindError/Code/addressInUse`` as a single socket would.
    public static func bindGroup(
        _ endpoint: IPEndpoint,
        count: Int,
        options: ListenerSocketOptions = ListenerSocketOptions()
    )
        throws(BindError) -> [UDPListenerSocket]
    {
        let first = try bind(endpoint, options: options, reusePort: false)
        guard count > 1 else { return [first] }
        var local = endpoint
        local.port = first.localEndpoint.port
        var group = [first]
        do throws(BindError) {
            // The first socket, bound alone, proved the port free; it now takes SO_REUSEPORT (Linux and the BSDs
            // accept it on a bound socket, and the group forms when the next member binds) and stays the first
            // worker, which saves a socket, a bind and a close per listener.
            do {
                try first.descriptor.setOption(
                    level: SOL_SOCKET,
                    name: SO_REUSEPORT,
                    value: 1,
                    "SO_REUSEPORT udp \(local)"
                )
            } catch {
                throw BindError(proto: "udp", endpoint: local, device: options.device, underlying: error)
            }
            for _ in 1..<count { group.append(try bind(local, options: options, reusePort: true)) }
        } catch {
            group.forEach { $0.close() }
            throw error
        }
        return group
    }

    static func bind(
        _ endpoint: IPEndpoint,
        options: ListenerSocketOptions,
        reusePort: Bool
    )
        throws(BindError) -> UDPListenerSocket
    {
        // Built only for an error message: formatting it for every socket was a tenth of binding's time.
        func context() -> String { "udp \(endpoint)" }
        do {
            let socket = try SocketDescriptor.open(
                family: endpoint.family,
                type: CInt(SOCK_DGRAM.rawValue),
                context: context()
            )
            if reusePort {
                try socket.setOption(level: SOL_SOCKET, name: SO_REUSEPORT, value: 1, "SO_REUSEPORT \(context())")
            }
            try applyCommon(options, to: socket, family: endpoint.family, context: context())
            let replySource = enableDestinationInfo(on: socket, for: endpoint, options: options, context: context())
            try socket.bind(to: endpoint, context: context())
            // A fixed port is bound exactly as asked, so only port 0 needs getsockname to learn the port.
            let local = endpoint.port == 0 ? try socket.localEndpoint(context: context()) : endpoint
            return UDPListenerSocket(descriptor: socket, localEndpoint: local, replySource: replySource)
        } catch {
            throw BindError(proto: "udp", endpoint: endpoint, device: options.device, underlying: error)
        }
    }

    /// Closes the socket.
    public func close() {
        descriptor.close()
    }

    /// Whether a wildcard socket of `family` can learn each datagram's destination address here (IP_PKTINFO or
    /// IP_RECVDSTADDR with IP_SENDSRCADDR for IPv4, IPV6_RECVPKTINFO for IPv6): probed on a throwaway unbound
    /// socket. Where it cannot, a wildcard service is served per address instead.
    public static func destinationInfoIsAvailable(for family: IPFamily) -> Bool {
        guard
            let socket = try? SocketDescriptor.open(
                family: family,
                type: CInt(SOCK_DGRAM.rawValue),
                context: "pktinfo probe"
            )
        else { return true }  // the family itself is missing; the bind will say so
        defer { socket.close() }
        let any = IPEndpoint.wildcard(family, port: 0)
        let source = enableDestinationInfo(on: socket, for: any, options: ListenerSocketOptions(), context: "probe")
        return source == .pktinfo || source == .recvdstaddr
    }

    /// What every listener socket, UDP or TCP, takes before it is bound: V6ONLY, freebind, the device.
    static func applyCommon(
        _ options: ListenerSocketOptions,
        to socket: SocketDescriptor,
        family: IPFamily,
        context: @autoclosure () -> String
    ) throws(SystemCallError) {
        // IPv6 listeners never take IPv4 (no IPv4-mapped clients): each family has its own socket. The one exception
        // joins an adopted dual-stack socket, whose SO_REUSEPORT group only takes sockets with the same V6ONLY.
        if family == .ipv6 {
            let v6Only: CInt = options.dualStack ? 0 : 1
            try socket.setOption(
                level: CInt(IPPROTO_IPV6),
                name: IPV6_V6ONLY,
                value: v6Only,
                "IPV6_V6ONLY \(context())"
            )
        }
        if options.freebind {
            let name = family == .ipv4 ? cudpd_ip_freebind : cudpd_ipv6_freebind
            let level = family == .ipv4 ? CInt(IPPROTO_IP) : CInt(IPPROTO_IPV6)
            guard name != 0 else {
                throw SystemCallError(call: "setsockopt(FREEBIND)", errno: ENOPROTOOPT, context: context())
            }
            try socket.setOption(level: level, name: name, value: 1, "FREEBIND \(context())")
        }
        if let device = options.device {
            guard cudpd_so_bindtodevice != 0 else {
                throw SystemCallError(call: "setsockopt(SO_BINDTODEVICE)", errno: ENOPROTOOPT, context: context())
            }
            let fd = socket.rawValue
            try systemCall("setsockopt", context: "SO_BINDTODEVICE \(device) \(context())") {
                device.withCString { setsockopt(fd, SOL_SOCKET, cudpd_so_bindtodevice, $0, socklen_t(strlen($0) + 1)) }
            }
        }
    }

    /// Enables the destination-address option a wildcard socket needs. When the platform has none, or the kernel
    /// refuses it (ENOPROTOOPT on an unusual stack), the socket still serves, with the `kernel` reply source that
    /// status and the log make visible, rather than not at all.
    static func enableDestinationInfo(
        on socket: SocketDescriptor,
        for endpoint: IPEndpoint,
        options: ListenerSocketOptions,
        context: @autoclosure () -> String
    ) -> ReplySource {
        guard endpoint.isWildcard else { return .bound }
        guard !options.withoutDestinationInfo else { return .kernel }
        switch endpoint.family {
        case .ipv4:
            if cudpd_ip_pktinfo != 0,
                (try? socket.setOption(
                    level: CInt(IPPROTO_IP),
                    name: cudpd_ip_pktinfo,
                    value: 1,
                    "IP_PKTINFO \(context())"
                )) != nil
            {
                return .pktinfo
            }
            if cudpd_ip_recvdstaddr != 0 && cudpd_ip_sendsrcaddr != 0,
                (try? socket.setOption(
                    level: CInt(IPPROTO_IP),
                    name: cudpd_ip_recvdstaddr,
                    value: 1,
                    "IP_RECVDSTADDR \(context())"
                )) != nil
            {
                return .recvdstaddr
            }
            return .kernel
        case .ipv6:
            let enabled =
                (try? socket.setOption(
                    level: CInt(IPPROTO_IPV6),
                    name: cudpd_ipv6_recvpktinfo,
                    value: 1,
                    "IPV6_RECVPKTINFO \(context())"
                )) != nil
            return enabled ? .pktinfo : .kernel
        }
    }
}
