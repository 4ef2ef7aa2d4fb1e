import Logging
import NIOCore
import Synchronization
import UDPDTransport

/// Relays UDP to the first upstream of its ``UpstreamPool`` that is up: each (client address and port, local address
/// it asked) pair gets a session with its own connected, non-blocking upstream socket, so that each upstream reply
/// goes back to that client from the local address it asked.
///
/// The datapath has no hop and no copy. A request is sent upstream from the listener's worker thread, straight from
/// the batch buffer it was received in (one `send`); finding its session takes a mutex and a dictionary lookup and
/// allocates nothing. Each session socket is served by the daemon's ``UDPWorkerPool`` like a listener's, and an
/// upstream reply is sent to the client from that pool thread's batch buffer with the client's destination address
/// (IP_PKTINFO), gathered with the other replies the thread read in the same pass into one `sendmmsg`.
///
/// Sessions end after `timeout` without traffic either way, found by a sweep every quarter of `timeout` (at most
/// every second) on an event loop of the daemon; at `maxSessions` the oldest is given up to make room, and counted.
/// Ending a session never waits for the pool (it may happen on a pool thread): its registration is retired and its
/// socket closes when the last reference goes. The session table lives with the handler: a reload that does not
/// change the service keeps the handler; one that changes it hands the sessions to the new handler
/// (``takeOver(from:)``), which carries over those whose upstream it also has, socket and all, and drains the others.
///
/// A session keeps its upstream while that upstream is up (one atomic load per datagram) and moves, with a new
/// socket, only once it is down: a request is never sent to two upstreams (a Kerberos one-time password may be used
/// once). An ICMP error on a session socket marks its upstream down. With no upstream up, requests are dropped and
/// counted as `no_upstream`.
///
/// `Sendable`: the session table and the sweep task are behind mutexes; the rest is immutable.
public final class ForwardDatagramHandler: DatagramHandler {
    private let upstreams: UpstreamPool
    private let pool: UDPWorkerPool
    private let group: any EventLoopGroup
    private let timeout: Duration
    private let sessions: ForwardSessionTable
    private let failures: RateLimitedLog
    /// Counts what the pool receives on the session sockets; not reported (the listener counts the replies it sends).
    private let upstreamCounters = ListenerCounters()
    private let sweeper = Mutex<RepeatedTask?>(nil)
    private let sweeping = Atomic<Bool>(false)
    /// `proxy-protocol: v2`: every request goes upstream after a PROXY protocol header naming its client.
    private let sendsProxyHeader: Bool
    /// `log-sessions: true`: where each session's opened and closed lines go (the service's TCP relays share it).
    let sessionLog: RateLimitedLog?
    /// `transparent: true`: where session sockets bound to the client's own address come from; `nil` otherwise.
    private let transparentSockets: TransparentSockets?
    /// Sessions of an earlier handler of the service whose upstream this one does not have: no request goes out on
    /// them any more, but replies still on their way are relayed until they go idle for `timeout`.
    private let draining = DrainingSessions()
    /// The handler that took this one's sessions over at a reload (``takeOver(from:)``): sessions this one still
    /// opens afterwards (a worker that took it just before the swap) go to it when this one ends.
    private let successor = Mutex<ForwardDatagramHandler?>(nil)

    /// Creates a handler relaying to `upstreams`; session sockets are served by `pool`, and idle sessions are swept
    /// on an event loop of `group`.
    public init(
        upstreams: UpstreamPool,
        pool: UDPWorkerPool,
        group: any EventLoopGroup,
        logger: Logger,
        timeout: Duration,
        maxSessions: Int,
        sendsProxyHeader: Bool = false,
        logsSessions: Bool = false,
        transparentSockets: TransparentSockets? = nil
    ) {
        self.sendsProxyHeader = sendsProxyHeader
        self.transparentSockets = transparentSockets
        self.sessionLog =
            logsSessions ? RateLimitedLog(logger: logger, lines: RateLimitedLog.sessionLinesPerSecond) : nil
        self.upstreams = upstreams
        self.pool = pool
        self.group = group
        self.timeout = timeout
        self.sessions = ForwardSessionTable(capacity: maxSessions)
        self.failures = RateLimitedLog(logger: logger)
        DescriptorTable.prepareHeadroom()
    }

    deinit {
        sweeper.withLock { $0?.cancel() }
        let left = sessions.removeAll() + draining.removeAll()
        if let successor = successor.withLock({ $0 }) {
            successor.adopt(left, transparent: transparentSockets != nil)
        } else {
            for session in left { session.retire(from: pool) }
        }
    }

    /// Sessions open now.
    public var sessionCount: Int { sessions.count }

    /// Takes over the sessions of `old`, the handler this one replaces at a reload, without closing a socket:
    /// a session whose upstream this handler also has carries over (the upstream sees the same client port, and its
    /// replies in flight arrive); the others drain here, relaying what comes back until idle. Call after this
    /// handler is in `old`'s place. Returns the sessions carried over and those draining.
    @discardableResult
    public func takeOver(from old: ForwardDatagramHandler) -> (carried: Int, draining: Int) {
        old.successor.withLock { $0 = self }
        let sessions = old.sessions.removeAll() + old.draining.removeAll()
        return adopt(sessions, transparent: old.transparentSockets != nil)
    }

    /// Carries over each of `sessions` (from a handler of the service whose upstream sockets were transparent or
    /// not, as `transparent` says) that it can, and drains the rest.
    @discardableResult
    private func adopt(_ sessions: [ForwardSession], transparent: Bool) -> (carried: Int, draining: Int) {
        guard !sessions.isEmpty else { return (0, 0) }
        // A socket bound to the client's address (or not) cannot become the other kind: all of them drain.
        guard transparent == (transparentSockets != nil) else {
            draining.add(sessions)
            startSweeping()
            return (0, sessions.count)
        }
        var carried = 0
        var drained: [ForwardSession] = []
        for session in sessions {
            let endpoint = session.upstreams.members[session.upstreamIndex].endpoint
            guard let index = upstreams.members.firstIndex(where: { $0.endpoint == endpoint }),
                let moved = ForwardSession.carry(
                    session,
                    to: index,
                    of: upstreams,
                    forward: self,
                    failures: failures,
                    sendsProxyHeader: sendsProxyHeader,
                    sessionLog: sessionLog
                )
            else {
                drained.append(session)
                continue
            }
            if self.sessions.adopt(moved) {
                carried += 1
            } else {
                drained.append(moved)
            }
        }
        draining.add(drained)
        startSweeping()
        return (carried, drained.count)
    }

    public func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        let key = ForwardSessionKey(peer: peer, local: destination.endpoint)
        // A second pass only after a send that failed with an ICMP error: the kernel sent nothing then, so the request
        // may go to the next upstream without ever reaching two.
        for pass in 0..<2 {
            var refused = DropReason.upstreamError
            var found = sessions.session(for: key)
            if let current = found, !upstreams.isUp(current.upstreamIndex) {
                // Its upstream is down: the session moves, with a new socket; nothing it sent is sent again.
                if sessions.remove(current) { current.retire(from: pool) }
                found = nil
            }
            let session: ForwardSession
            if let found {
                session = found
                session.forgetFirstRequest()
            } else {
                guard let opened = open(key, destination: destination, replier: replier, refused: &refused) else {
                    return .drop(refused)
                }
                session = opened
                if upstreams.members.count > 1 {
                    session.keepFirstRequest(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
                }
            }
            session.touch()
            do {
                if try session.send(UnsafeRawBufferPointer(rebasing: buffer[0..<length])) {
                    session.countRequest()
                    return .noReply
                }
                failures.warning(
                    "the upstream socket's send buffer is full",
                    metadata: ["upstream": "\(upstreams.members[session.upstreamIndex].endpoint)"]
                )
                return .drop(.sendBufferFull)
            } catch {
                failures.warning(
                    "cannot send to the upstream",
                    metadata: [
                        "upstream": "\(upstreams.members[session.upstreamIndex].endpoint)", "client": "\(peer)",
                        "error": "\(error)",
                    ]
                )
                // ECONNREFUSED here reports an ICMP error for an earlier request: that upstream is down.
                guard error.isUpstreamUnreachable, pass == 0 else { break }
                upstreams.markDown(session.upstreamIndex, because: "\(error)")
            }
        }
        return .drop(.upstreamError)
    }

    /// Sends `request`, the first and only request of `session`, which its upstream refused (so no process there
    /// received it), through a new session to the next upstream that is up; counted as lost when there is none,
    /// or when the next one is the same upstream (a lone upstream without probes is never marked down). On the pool
    /// thread that read the refusal.
    func resend(refused request: [UInt8], of session: ForwardSession) {
        if sessions.remove(session) { session.retire(from: pool) }
        guard let next = upstreams.firstUp(), next != session.upstreamIndex else {
            session.replier.counters.addDrop(.upstreamError)
            return
        }
        var copy = request
        let verdict = copy.withUnsafeMutableBytes { buffer in
            handle(
                buffer,
                length: buffer.count,
                peer: session.key.peer,
                destination: session.destination,
                replier: session.replier
            )
        }
        if case .drop(let reason) = verdict { session.replier.counters.addDrop(reason) }
    }

    /// Opens the session for `key`, making room if the table is full; `nil` when no socket could be opened, with
    /// why in `refused` (out of descriptors, `no_descriptor`, costs only this datagram).
    private func open(
        _ key: ForwardSessionKey,
        destination: DatagramDestination,
        replier: DatagramReplier,
        refused: inout DropReason
    ) -> ForwardSession? {
        guard let index = upstreams.firstUp() else {
            refused = .noUpstream
            failures.warning("no upstream is up", metadata: ["client": "\(key.peer)"])
            return nil
        }
        let upstream = upstreams.members[index].endpoint
        // An upstream that is one of udpd's own listeners would take each request on as a new client, through a new
        // session, for ever: no session is opened towards it.
        guard !pool.ownListeners.current.contains(upstream) else {
            refused = .ownUpstream
            failures.warning("the upstream is one of udpd's own listeners", metadata: ["upstream": "\(upstream)"])
            return nil
        }
        let opened: (session: ForwardSession, evicted: ForwardSession?)
        do {
            opened = try sessions.session(for: key) { () throws(SystemCallError) in
                try ForwardSession.open(
                    key: key,
                    destination: destination,
                    replier: replier,
                    upstreamIndex: index,
                    upstreams: upstreams,
                    pool: pool,
                    upstreamCounters: upstreamCounters,
                    forward: self,
                    failures: failures,
                    sendsProxyHeader: sendsProxyHeader,
                    sessionLog: sessionLog,
                    transparentSockets: transparentSockets
                )
            }
        } catch {
            refused = error.isDescriptorShortage ? .noDescriptor : .upstreamError
            failures.warning(
                "cannot open an upstream UDP socket",
                metadata: [
                    "upstream": "\(upstream)", "client": "\(key.peer)", "error": "\(error)",
                ]
            )
            return nil
        }
        if let evicted = opened.evicted {
            replier.counters.addDrop(.sessionEvicted)
            evicted.retire(from: pool)
        }
        startSweeping()
        return opened.session
    }

    /// Starts the idle sweep once, with the first session: a handler that never sees traffic holds nothing.
    private func startSweeping() {
        guard !sweeping.load(ordering: .relaxed),
            sweeping.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged
        else { return }
        let quarter = timeout / 4
        let interval = min(max(quarter, .milliseconds(20)), .seconds(1))
        let sessions = self.sessions
        let draining = self.draining
        let pool = self.pool
        // Clamped, never trapping: `timeout` is bounded at validation, but a conversion must not stop the daemon.
        let idleNanoseconds = UInt64(clamping: timeout.saturatingNanoseconds)
        let delay = TimeAmount.nanoseconds(interval.saturatingNanoseconds)
        let task = group.next().scheduleRepeatedTask(initialDelay: delay, delay: delay) { _ in
            let now = NIODeadline.now().uptimeNanoseconds
            guard now > idleNanoseconds else { return }
            let deadline = now - idleNanoseconds
            for session in sessions.removeIdle(lastActiveBefore: deadline) {
                session.retire(from: pool)
            }
            for session in draining.removeIdle(lastActiveBefore: deadline) { session.retire(from: pool) }
        }
        sweeper.withLock { $0 = task }
    }
}
