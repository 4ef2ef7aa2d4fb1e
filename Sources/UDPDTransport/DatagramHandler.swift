/// Why a datagram was not answered, or a TCP connection refused or closed; each reason has its own counter.
public enum DropReason: Int, Sendable, CaseIterable, CustomStringConvertible {
    /// It arrived larger than the receive buffer (MSG_TRUNC).
    case truncated
    /// A wildcard socket received it without its destination address, so no correct reply source is known.
    case noDestination
    /// sendmsg refused the reply.
    case sendError
    /// The reply was not sent because the socket's send buffer, or the queue of the device it leaves by, was full
    /// (EAGAIN, ENOBUFS): replies are sent without waiting, so a slow path drops its own replies instead of stalling
    /// every socket its worker thread serves.
    case sendBufferFull
    /// A built-in service refused to answer a source that would start a loop or a reflection (port 0, a well-known
    /// UDP service port, a broadcast or multicast address).
    case reflection
    /// Its source is one of udpd's own UDP listeners (the same address and port, or a wildcard listener's port on
    /// one of the host's addresses): udpd sent it, or someone forged it to start a loop between udpd's services.
    /// Never answered, never relayed, whatever the handler.
    case ownSource
    /// A forward's upstream is one of udpd's own UDP listeners (a host name that resolves to one): the request was
    /// not sent, so that the forward does not feed itself one new session per turn.
    case ownUpstream
    /// It is larger than the service's `max-datagram`.
    case oversize
    /// Its source is over the service's `rate-limit`.
    case rateLimited
    /// Its source is over the service's `rate-limit` with `over-limit: krb5-tcp`, and it was a Kerberos AS-REQ or
    /// TGS-REQ: not forwarded, but answered by udpd with KRB_ERR_RESPONSE_TOO_BIG, so that the client sends it again
    /// over TCP (where a source address cannot be forged).
    case rateLimitedTCPRedirect
    /// Its source is not allowed (`allow`/`deny`).
    case denied
    /// The handler could not serve it (an upstream or program failed, a limit was reached).
    case handlerFailed
    /// A TCP connection was closed to make room under the service's `max-connections` (the oldest goes first).
    case connectionLimit
    /// A TCP connection was refused: its source already had `max-connections-per-source` connections.
    case sourceLimit
    /// A TCP connection was closed after `idle-timeout` without a byte read or written.
    case idleTimeout
    /// A framed TCP connection was closed: a message did not arrive whole within the request deadline.
    case requestDeadline
    /// A forward's oldest UDP session was dropped to make room under `max-sessions`.
    case sessionEvicted
    /// A forward's upstream was unreachable, refused, or did not accept the request or connection.
    case upstreamError
    /// None of a forward's upstreams was up: the request was dropped, or the TCP connection closed at once, so that
    /// the client moves on to its next server.
    case noUpstream
    /// udpd was out of descriptors (its open-file limit, less the few it keeps for itself, or the system's): a
    /// forward session's socket or an exec program's pipes could not be opened, or a TCP connection could not be
    /// accepted or was closed at once. Only that request is lost; udpd keeps serving.
    case noDescriptor
    /// An exec service was already running `max-instances` programs; the request or connection was refused.
    case instancesExceeded
    /// An exec program ran past its `timeout` and was killed (with everything it started).
    case execTimeout
    /// An exec program died of a signal udpd did not send (it crashed: SIGSEGV, SIGABRT, ...); other requests and
    /// the next one are not affected.
    case execCrashed
    /// A process of an exec program's tree was killed: the program at its `timeout`, or what it left running
    /// (background or `setsid` children) at the timeout or at udpd's shutdown. One count per process.
    case execKilled
    /// A krb5-framed TCP message announced more than `max-message` bytes; the connection was closed.
    case frameTooLong
    /// A krb5-framed TCP message set the reserved high bit of its length; the connection was closed.
    case frameReservedBit
    /// A relayed TCP connection ended because the client reset it (or it failed); the upstream was reset too.
    case clientReset
    /// A relayed TCP connection ended because the upstream reset it (or it failed); the client was reset too.
    case upstreamReset

    /// The reason as it appears in status and metrics.
    public var description: String {
        switch self {
        case .truncated: "truncated"
        case .noDestination: "no_destination"
        case .sendError: "send_error"
        case .sendBufferFull: "send_buffer_full"
        case .reflection: "reflection"
        case .ownSource: "own_source"
        case .ownUpstream: "own_upstream"
        case .oversize: "oversize"
        case .rateLimited: "rate_limited"
        case .rateLimitedTCPRedirect: "rate_limited_tcp_redirect"
        case .denied: "denied"
        case .handlerFailed: "handler_failed"
        case .connectionLimit: "connection_limit"
        case .sourceLimit: "source_limit"
        case .idleTimeout: "idle_timeout"
        case .requestDeadline: "request_deadline"
        case .sessionEvicted: "session_evicted"
        case .upstreamError: "upstream_error"
        case .noUpstream: "no_upstream"
        case .noDescriptor: "no_descriptor"
        case .instancesExceeded: "instances_exceeded"
        case .execTimeout: "exec_timeout"
        case .execCrashed: "exec_crashed"
        case .execKilled: "exec_killed"
        case .frameTooLong: "frame_too_long"
        case .frameReservedBit: "frame_reserved_bit"
        case .clientReset: "client_reset"
        case .upstreamReset: "upstream_reset"
        }
    }
}

/// Where a datagram was received: the local address the client sent it to, and the interface it came in on.
public struct DatagramDestination: Sendable, Hashable {
    /// The local address and port the client asked.
    public var endpoint: IPEndpoint
    /// The interface index it arrived on (0 when unknown); needed to answer from an IPv6 link-local address.
    public var interfaceIndex: UInt32

    /// Creates a destination.
    public init(endpoint: IPEndpoint, interfaceIndex: UInt32) {
        self.endpoint = endpoint
        self.interfaceIndex = interfaceIndex
    }
}

/// What a handler decided about one datagram.
public enum DatagramVerdict: Sendable, Equatable {
    /// Send the first `length` bytes of the buffer back to the client, from the address it asked.
    case reply(length: Int)
    /// Send nothing now (discard, or a handler that answers later through a ``DatagramReplier``).
    case noReply
    /// Send nothing and count the datagram as dropped for `reason`.
    case drop(DropReason)
    /// Send the first `length` bytes of the buffer where `relay` says, through another listener's socket: a
    /// forward's upstream reply going back to its client. The worker gathers the relays of every socket it serves
    /// in one pass and sends them to each listener together (sendmmsg); they count as sent on that listener.
    case relay(length: Int, via: DatagramRelay)
}

/// Where relayed datagrams go: through a listener's socket, to one client, from the local address it asked.
///
/// A handler that relays keeps one per client (a forward session has one), so that a relayed datagram carries a
/// single reference rather than the listener's socket, its counters and two addresses. `Sendable`: immutable.
public final class DatagramRelay: Sendable, Equatable {
    /// The listener the datagrams leave through, and whose counters count them.
    public let replier: DatagramReplier
    /// The client.
    public let peer: IPEndpoint
    /// The local address the client asked, which the datagrams leave from.
    public let source: DatagramDestination

    /// Creates a relay to `peer` through `replier`'s socket, from `source`.
    public init(through replier: DatagramReplier, to peer: IPEndpoint, from source: DatagramDestination) {
        self.replier = replier
        self.peer = peer
        self.source = source
    }

    /// The same relay object.
    public static func == (lhs: DatagramRelay, rhs: DatagramRelay) -> Bool { lhs === rhs }
}

/// Serves the datagrams of a UDP listener, on the listener's worker thread.
///
/// Handlers run on a dedicated thread in a tight loop, so they must not block and should not allocate.
public protocol DatagramHandler: Sendable {
    /// Handles one datagram.
    ///
    /// - Parameters:
    ///   - buffer: the whole slot buffer; the request is its first `length` bytes, and a reply is written in place
    ///     from offset 0 (it may be as long as the buffer).
    ///   - length: the request's length.
    ///   - peer: the client's address and port.
    ///   - destination: the local address the client sent to.
    ///   - replier: sends replies later, for handlers that answer asynchronously.
    func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict

    /// Told when receiving on the socket failed with something other than "nothing waiting": on a connected
    /// socket, ECONNREFUSED reports an ICMP error for an earlier datagram. Reading the error clears it; the worker
    /// goes on serving the socket. The default does nothing.
    func receiveFailed(_ error: SystemCallError)
}

extension DatagramHandler {
    /// Does nothing: a listener's bound socket has no peer to report about.
    public func receiveFailed(_ error: SystemCallError) {}
}
