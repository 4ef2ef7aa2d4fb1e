import Logging
import NIOCore
import Synchronization
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Who a session serves: the client and the local address it asked.
struct ForwardSessionKey: Hashable, Sendable {
    var peer: IPEndpoint
    var local: IPEndpoint
}

/// One client's relay to the upstream: its own connected upstream socket, served by the daemon's worker pool.
///
/// Requests go out on the socket straight from the listener's worker thread; the upstream's replies arrive on a pool
/// thread, which relays each to the client from the address it asked, through the listener's socket.
///
/// `@unchecked Sendable`: everything is immutable except the time of the last traffic, which is atomic, the pool
/// registration, which is behind a mutex, and ``serial``, which only the ``ForwardSessionTable`` writes and reads,
/// under its lock.
final class ForwardSession: @unchecked Sendable {
    let key: ForwardSessionKey
    let destination: DatagramDestination
    let replier: DatagramReplier
    /// Where the upstream's replies go: the client, through its listener, from the address it asked.
    let relay: DatagramRelay
    /// Which of the pool's upstreams the socket is connected to; the session keeps it while that upstream is up.
    let upstreamIndex: Int
    /// The pool, which counts the session against its upstream while it lives.
    let upstreams: UpstreamPool
    /// The connected upstream socket. Never closed explicitly: another thread may be sending on it; it closes when
    /// the session, the pool's registration and any pass serving it have all let go of it.
    let upstream: UpstreamDatagramSocket
    /// The PROXY protocol header sent before every request (`proxy-protocol: v2`), built once; `nil` for none.
    let proxyHeader: [UInt8]?
    /// Where `log-sessions` lines go; `nil` without the key (then nothing below is counted).
    let sessionLog: RateLimitedLog?
    /// Requests sent and replies relayed, counted only for the session log.
    private let requests = Atomic<UInt64>(0)
    private let replies = Atomic<UInt64>(0)
    /// `NIODeadline.now().uptimeNanoseconds` of the last datagram either way.
    let lastActivity: Atomic<UInt64>
    /// Whether the session has sent one request and seen nothing yet: while it is, ``firstRequest`` holds a copy of
    /// that request, which may go to the next upstream should this one refuse it (see ``takeRefusedFirstRequest()``).
    private let onlyFirstRequest = Atomic<Bool>(false)
    private let firstRequest = Mutex<[UInt8]?>(nil)
    private let registration = Mutex<UDPPoolRegistration?>(nil)
    /// The table's creation number for this session; guarded by the table's lock.
    var serial: UInt64 = 0

    init(
        key: ForwardSessionKey,
        destination: DatagramDestination,
        replier: DatagramReplier,
        upstreamIndex: Int,
        upstreams: UpstreamPool,
        upstream: UpstreamDatagramSocket,
        proxyHeader: [UInt8]?,
        sessionLog: RateLimitedLog?,
        now: UInt64
    ) {
        self.key = key
        self.proxyHeader = proxyHeader
        self.sessionLog = sessionLog
        self.upstreamIndex = upstreamIndex
        self.upstreams = upstreams
        self.destination = destination
        self.replier = replier
        self.relay = DatagramRelay(through: replier, to: key.peer, from: destination)
        self.upstream = upstream
        self.lastActivity = Atomic(now)
    }

    /// Opens a session: a socket connected to upstream `upstreamIndex` of `upstreams` (bound to the client's own
    /// address and port with `transparentSockets`), registered with `pool` to serve the replies.
    static func open(
        key: ForwardSessionKey,
        destination: DatagramDestination,
        replier: DatagramReplier,
        upstreamIndex: Int,
        upstreams: UpstreamPool,
        pool: UDPWorkerPool,
        upstreamCounters: ListenerCounters,
        forward: ForwardDatagramHandler,
        failures: RateLimitedLog,
        sendsProxyHeader: Bool,
        sessionLog: RateLimitedLog?,
        transparentSockets: TransparentSockets?
    ) throws(SystemCallError) -> ForwardSession {
        let upstream = upstreams.members[upstreamIndex].endpoint
        let socket =
            if let transparentSockets {
                try UpstreamDatagramSocket.connect(to: upstream, from: key.peer, through: transparentSockets)
            } else {
                try UpstreamDatagramSocket.connect(to: upstream)
            }
        let session = ForwardSession(
            key: key,
            destination: destination,
            replier: replier,
            upstreamIndex: upstreamIndex,
            upstreams: upstreams,
            upstream: socket,
            proxyHeader: sendsProxyHeader ? proxyHeader(for: key) : nil,
            sessionLog: sessionLog,
            now: NIODeadline.now().uptimeNanoseconds
        )
        let registration = try pool.register(
            socket,
            handler: UpstreamReplyHandler(session: session, forward: forward, failures: failures),
            counters: upstreamCounters
        )
        session.registration.withLock { $0 = registration }
        upstreams.sessionOpened(upstreamIndex)
        sessionLog?.notice("UDP session opened", metadata: session.logMetadata)
        return session
    }

    /// The session `old` as a session of a reloaded service's new handler, `forward`: same client, same socket
    /// (so the upstream sees the same source port, and replies already on their way arrive), now counted against
    /// upstream `upstreamIndex` of the new pool and sending the new handler's PROXY header, if any. The pool serves
    /// the socket with the new handler from its next batch on; nothing queued on the socket is lost. `nil` when
    /// `old` already ended.
    static func carry(
        _ old: ForwardSession,
        to upstreamIndex: Int,
        of upstreams: UpstreamPool,
        forward: ForwardDatagramHandler,
        failures: RateLimitedLog,
        sendsProxyHeader: Bool,
        sessionLog: RateLimitedLog?
    ) -> ForwardSession? {
        let carried = ForwardSession(
            key: old.key,
            destination: old.destination,
            replier: old.replier,
            upstreamIndex: upstreamIndex,
            upstreams: upstreams,
            upstream: old.upstream,
            proxyHeader: sendsProxyHeader ? proxyHeader(for: old.key) : nil,
            sessionLog: sessionLog,
            now: old.lastActivity.load(ordering: .relaxed)
        )
        let registration = old.registration.withLock { current -> UDPPoolRegistration? in
            defer { current = nil }
            return current
        }
        guard let registration else { return nil }
        registration.replaceHandler(
            with: UpstreamReplyHandler(session: carried, forward: forward, failures: failures)
        )
        carried.registration.withLock { $0 = registration }
        carried.requests.store(old.requests.load(ordering: .relaxed), ordering: .relaxed)
        carried.replies.store(old.replies.load(ordering: .relaxed), ordering: .relaxed)
        old.upstreams.sessionEnded(old.upstreamIndex)
        upstreams.sessionOpened(upstreamIndex)
        return carried
    }

    /// The PROXY protocol header naming the client of `key` and the local address it asked, built once per session.
    private static func proxyHeader(for key: ForwardSessionKey) -> [UInt8] {
        ProxyProtocolHeader(client: key.peer.unmappingIPv4, local: key.local.unmappingIPv4, transport: .datagram).bytes
    }

    /// What the session log says of every line of this session: who, where to, and the port udpd used upstream.
    var logMetadata: Logger.Metadata {
        [
            "client": "\(key.peer.unmappingIPv4)", "local": "\(key.local.unmappingIPv4)",
            "upstream": "\(upstreams.members[upstreamIndex].endpoint)",
            "upstream_local_port": "\(upstream.localEndpoint.port)",
        ]
    }

    /// Counts a request sent, for the session log.
    @inline(__always)
    func countRequest() {
        if sessionLog != nil { requests.wrappingAdd(1, ordering: .relaxed) }
    }

    /// Counts a reply relayed, for the session log.
    @inline(__always)
    func countReply() {
        if sessionLog != nil { replies.wrappingAdd(1, ordering: .relaxed) }
    }

    /// Sends `request` upstream without blocking, after the PROXY protocol header if the session has one (one
    /// gathering `sendmsg`, no copy); `false` when the socket's send buffer is full.
    @inline(__always)
    func send(_ request: UnsafeRawBufferPointer) throws(SystemCallError) -> Bool {
        guard let proxyHeader else { return try upstream.send(request) }
        let sent = proxyHeader.withUnsafeBytes { header in
            Result { () throws(SystemCallError) in try upstream.send(request, after: header) }
        }
        return try sent.get()
    }

    /// Records traffic now.
    @inline(__always)
    func touch() {
        lastActivity.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
    }

    /// The largest first request kept for a resend: Kerberos requests over UDP are at most 1465 bytes by default
    /// (MIT's `udp_preference_limit`), and a bound keeps a flood of one-datagram sessions from holding much memory.
    static let largestKeptRequest = 2048

    /// Keeps a copy of the session's first request, when it is small enough; once per session, before it is sent.
    func keepFirstRequest(_ request: UnsafeRawBufferPointer) {
        guard request.count <= Self.largestKeptRequest else { return }
        firstRequest.withLock { $0 = Array(request) }
        onlyFirstRequest.store(true, ordering: .relaxed)
    }

    /// The session sent a second request, or received a datagram: its first request may have reached the upstream,
    /// so it is never sent anywhere else. One atomic load per datagram; the copy is freed once.
    @inline(__always)
    func forgetFirstRequest() {
        guard onlyFirstRequest.load(ordering: .relaxed) else { return }
        if onlyFirstRequest.exchange(false, ordering: .relaxed) { firstRequest.withLock { $0 = nil } }
    }

    /// The session's first request, when the upstream refused it (ICMP port unreachable: no process there received
    /// it) before anything else happened on the session; at most once.
    func takeRefusedFirstRequest() -> [UInt8]? {
        guard onlyFirstRequest.exchange(false, ordering: .relaxed) else { return nil }
        return firstRequest.withLock { request in
            defer { request = nil }
            return request
        }
    }

    /// Stops serving the upstream socket, without waiting (safe on any thread, a pool thread included); the socket
    /// closes when the last reference to it goes. Later calls do nothing.
    func retire(from pool: UDPWorkerPool) {
        let registration = registration.withLock { current -> UDPPoolRegistration? in
            defer { current = nil }
            return current
        }
        if let registration {
            pool.retire(registration)
            upstreams.sessionEnded(upstreamIndex)
            if let sessionLog {
                var metadata = logMetadata
                metadata["requests"] = "\(requests.load(ordering: .relaxed))"
                metadata["replies"] = "\(replies.load(ordering: .relaxed))"
                sessionLog.notice("UDP session closed", metadata: metadata)
            }
        }
    }
}

/// Serves a session's upstream socket on a pool thread: each upstream datagram goes to the session's client, from
/// the local address the client asked, straight from the pool thread's batch buffer, as a relay: the thread sends
/// the replies of every session it served in one pass together, with one sendmmsg per listener.
///
/// `Sendable`: it holds only the `Sendable` session, forward handler (weakly: a reload that drops the handler drops
/// its sessions) and log.
final class UpstreamReplyHandler: DatagramHandler {
    let session: ForwardSession
    weak let forward: ForwardDatagramHandler?
    let failures: RateLimitedLog

    init(session: ForwardSession, forward: ForwardDatagramHandler, failures: RateLimitedLog) {
        self.session = session
        self.forward = forward
        self.failures = failures
    }

    /// The upstream refused an earlier request (ECONNREFUSED from an ICMP port unreachable) or another error
    /// arrived on the session socket: the request it answers is lost, counted on the client's listener. An ICMP
    /// error marks the upstream down, so that the session's next request moves to the next upstream that is up.
    ///
    /// A refusal (ECONNREFUSED) of a session's only request means that no process received it: that request goes
    /// to the next upstream that is up, once, so that a client whose KDC just stopped is answered by the next one
    /// without waiting for its own retry, and still no request reaches two upstreams.
    func receiveFailed(_ error: SystemCallError) {
        failures.warning("upstream error", metadata: ["client": "\(session.key.peer)", "error": "\(error)"])
        if error.isUpstreamUnreachable {
            session.upstreams.markDown(session.upstreamIndex, because: "\(error)")
        }
        if error.errno == ECONNREFUSED, let forward, let request = session.takeRefusedFirstRequest() {
            forward.resend(refused: request, of: session)
            return
        }
        session.replier.counters.addDrop(.upstreamError)
    }

    func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        // The connected socket only receives from the upstream, so `peer` needs no check.
        session.touch()
        session.forgetFirstRequest()
        session.countReply()
        // A listener that a reload removed is closing: no relay is queued for it (sending them holds the socket
        // open and skips one that is closing, so this is only a shortcut).
        guard !session.replier.socket.descriptor.isClosed else { return .noReply }
        return .relay(length: length, via: session.relay)
    }
}

extension SystemCallError {
    /// Whether the error reports an ICMP error from (or on the way to) the upstream a socket is connected to: the
    /// upstream is not there, a hard failure.
    var isUpstreamUnreachable: Bool {
        switch errno {
        case ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN: true
        default: false
        }
    }
}
