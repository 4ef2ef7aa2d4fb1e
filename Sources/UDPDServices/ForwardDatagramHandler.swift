import Logging
import NIOCore
import NIOPosix
import Synchronization
import UDPDTransport

/// Relays UDP to an upstream server: each (client address and port, local address it asked) pair gets a session
/// with its own connected upstream socket, so that each upstream reply goes back to that client from the local
/// address it asked, through the listener's ``DatagramReplier``.
///
/// The listener's worker thread only copies the datagram and hands it to the session's SwiftNIO channel; it never
/// waits for the upstream. Sessions end after `timeout` without traffic; at `maxSessions` the oldest is closed to
/// make room, and counted. The session table lives with the handler: a reload that changes the service drops its
/// sessions (a client's next datagram opens a new one), a reload that does not keeps them.
///
/// `Sendable`: the session table is behind a mutex; the rest is immutable.
public final class ForwardDatagramHandler: DatagramHandler {
    private let upstream: SocketAddress
    private let group: any EventLoopGroup
    private let timeout: Duration
    private let sessions: ForwardSessionTable
    private let failures: RateLimitedLog
    private let allocator = ByteBufferAllocator()

    /// Creates a handler relaying to `upstream`.
    public init(upstream: SocketAddress, group: any EventLoopGroup, logger: Logger, timeout: Duration,
                maxSessions: Int) {
        self.upstream = upstream
        self.group = group
        self.timeout = timeout
        self.sessions = ForwardSessionTable(capacity: maxSessions)
        self.failures = RateLimitedLog(logger: logger)
    }

    /// Sessions open now.
    public var sessionCount: Int { sessions.count }

    public func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        var payload = allocator.buffer(capacity: length)
        payload.writeBytes(UnsafeRawBufferPointer(rebasing: buffer[0..<length]))
        let key = ForwardSessionKey(peer: peer, local: destination.endpoint)
        let (session, evicted) = sessions.session(for: key) {
            ForwardSession(key: key, destination: destination, replier: replier, failures: failures)
        }
        if let evicted {
            replier.counters.addDrop(.sessionEvicted)
            evicted.close()
        }
        if session.isNew { open(session.value) }
        session.value.send(payload)
        return .noReply
    }

    /// Opens the session's upstream socket: a datagram channel connected to the upstream, so that only the
    /// upstream's replies reach it and an unreachable upstream shows as an error.
    private func open(_ session: ForwardSession) {
        let sessions = self.sessions
        let timeout = TimeAmount.nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                              + Int64(timeout.components.attoseconds / 1_000_000_000))
        let bootstrap = DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(UpstreamReplyHandler(session: session))
                }
            }
        bootstrap.connect(to: upstream).whenComplete { result in
            switch result {
            case .success(let channel):
                session.attach(channel)
                channel.closeFuture.whenComplete { _ in sessions.remove(session) }
                ForwardSession.expireWhenIdle(session, channel: channel, timeout: timeout)
            case .failure(let error):
                session.replier.counters.addDrop(.upstreamError)
                session.failures.warning("cannot open an upstream UDP socket", metadata: ["error": "\(error)"])
                session.close()
                sessions.remove(session)
            }
        }
    }
}

/// Who a session serves: the client and the local address it asked.
struct ForwardSessionKey: Hashable, Sendable {
    var peer: IPEndpoint
    var local: IPEndpoint
}

/// One client's relay to the upstream.
///
/// `Sendable`: its mutable state (the channel, or the datagrams waiting for it) is behind a mutex; the time of the
/// last traffic is atomic.
final class ForwardSession: Sendable {
    private enum State {
        case opening([ByteBuffer])
        case open(any Channel)
        case closed
    }

    /// At most this many datagrams wait for the upstream socket to open; more are dropped.
    static let maxWaiting = 16

    let key: ForwardSessionKey
    let destination: DatagramDestination
    let replier: DatagramReplier
    let failures: RateLimitedLog
    private let state = Mutex(State.opening([]))
    /// `NIODeadline.now().uptimeNanoseconds` of the last datagram either way.
    let lastActivity = Atomic<UInt64>(NIODeadline.now().uptimeNanoseconds)

    init(key: ForwardSessionKey, destination: DatagramDestination, replier: DatagramReplier,
         failures: RateLimitedLog) {
        self.key = key
        self.destination = destination
        self.replier = replier
        self.failures = failures
    }

    /// Sends a client's datagram upstream, or keeps it until the upstream socket is open.
    func send(_ payload: ByteBuffer) {
        lastActivity.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
        let channel: (any Channel)? = state.withLock { state in
            switch state {
            case .opening(var waiting):
                if waiting.count < Self.maxWaiting {
                    waiting.append(payload)
                    state = .opening(waiting)
                } else {
                    replier.counters.addDrop(.upstreamError)
                }
                return nil
            case .open(let channel):
                return channel
            case .closed:
                replier.counters.addDrop(.upstreamError)
                return nil
            }
        }
        channel.map { write(payload, on: $0) }
    }

    /// The upstream socket is open: send what waited.
    func attach(_ channel: any Channel) {
        let waiting: [ByteBuffer]? = state.withLock { state in
            guard case .opening(let waiting) = state else { return nil }
            state = .open(channel)
            return waiting
        }
        guard let waiting else {
            channel.close(promise: nil)
            return
        }
        for payload in waiting { write(payload, on: channel) }
    }

    private func write(_ payload: ByteBuffer, on channel: any Channel) {
        let counters = replier.counters
        let failures = self.failures
        channel.writeAndFlush(payload).whenFailure { error in
            counters.addDrop(.upstreamError)
            failures.warning("cannot send to the upstream", metadata: ["error": "\(error)"])
        }
    }

    /// Sends an upstream reply to the client, from the address it asked.
    func reply(_ payload: ByteBuffer) {
        lastActivity.store(NIODeadline.now().uptimeNanoseconds, ordering: .relaxed)
        payload.withUnsafeReadableBytes { bytes in
            _ = replier.send(bytes, to: key.peer, from: destination)
        }
    }

    /// Closes the upstream socket; datagrams still waiting are dropped.
    func close() {
        let channel: (any Channel)? = state.withLock { state in
            defer { state = .closed }
            if case .open(let channel) = state { return channel }
            return nil
        }
        channel?.close(promise: nil)
    }

    /// Closes the session's channel once it has seen no traffic for `timeout`.
    static func expireWhenIdle(_ session: ForwardSession, channel: any Channel, timeout: TimeAmount) {
        let idle = Int64(NIODeadline.now().uptimeNanoseconds &- session.lastActivity.load(ordering: .relaxed))
        if idle >= timeout.nanoseconds {
            session.close()
            return
        }
        channel.eventLoop.scheduleTask(in: timeout - .nanoseconds(idle)) {
            expireWhenIdle(session, channel: channel, timeout: timeout)
        }
    }
}

/// Passes the upstream's replies to the session, and counts what goes wrong upstream.
///
/// `Sendable`: it holds only the `Sendable` session.
private final class UpstreamReplyHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let session: ForwardSession

    init(session: ForwardSession) {
        self.session = session
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        session.reply(unwrapInboundIn(data).data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ECONNREFUSED (the upstream's port is closed) is not fatal for a datagram channel: the session stays.
        session.replier.counters.addDrop(.upstreamError)
        session.failures.warning("upstream error", metadata: [
            "client": "\(session.key.peer)", "error": "\(error)",
        ])
    }
}
