import NIOCore
import NIOPosix
import Synchronization
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Builds the channel handlers of one accepted connection and holds the service's ``ConnectionPolicy``; a reload
/// swaps both so that new connections get the new settings while open ones keep theirs.
///
/// `Sendable`: the factory and policy are behind a mutex.
public final class StreamHandlerSlot: Sendable {
    /// Makes the handlers of a new connection, on its event loop, given its listener's counters. The handlers
    /// need not be `Sendable`: they are made and added on the connection's own event loop.
    public typealias Factory = @Sendable (ListenerCounters) -> [any ChannelHandler]

    /// The factory and policy in place, boxed in a class: a closure kept directly in the mutex's generic tuple
    /// came back re-wrapped in a reabstraction thunk on every read, a chain that grew with every connection
    /// accepted until accepting 10,000 connections took a minute.
    private final class Contents: Sendable {
        let factory: Factory
        let policy: ConnectionPolicy

        init(factory: @escaping Factory, policy: ConnectionPolicy) {
            self.factory = factory
            self.policy = policy
        }
    }

    private let current: Mutex<Contents>

    /// Creates a slot with `factory`, under `policy`.
    public init(_ factory: @escaping Factory, policy: ConnectionPolicy = ConnectionPolicy()) {
        current = Mutex(Contents(factory: factory, policy: policy))
    }

    /// Puts `factory` and `policy` in place for connections accepted from now on.
    public func replace(with factory: @escaping Factory, policy: ConnectionPolicy) {
        let contents = Contents(factory: factory, policy: policy)
        current.withLock { $0 = contents }
    }

    /// The policy for a new connection.
    public var policy: ConnectionPolicy { current.withLock { $0 }.policy }

    /// The handlers for a new connection of a listener counting on `counters`.
    public func makeHandlers(counters: ListenerCounters) -> [any ChannelHandler] {
        current.withLock { $0 }.factory(counters)
    }
}

/// A TCP listener served on SwiftNIO: it adopts a socket udpd bound itself, accepts connections, and keeps track
/// of them so that a removed listener can let them finish within a grace period.
///
/// `Sendable`: the channel is thread-safe and the connection registry is behind a mutex.
public final class TCPListener: Sendable {
    /// The address and port listened on.
    public let localEndpoint: IPEndpoint
    private let serverChannel: any Channel
    private let connections: ConnectionRegistry

    private init(localEndpoint: IPEndpoint, serverChannel: any Channel, connections: ConnectionRegistry) {
        self.localEndpoint = localEndpoint
        self.serverChannel = serverChannel
        self.connections = connections
    }

    /// Starts accepting on `socket`, which the listener owns from now on.
    public static func start(
        socket: TCPListenerSocket,
        group: any EventLoopGroup,
        slot: StreamHandlerSlot,
        counters: ListenerCounters
    ) async throws -> TCPListener {
        let connections = ConnectionRegistry()
        DescriptorTable.prepareHeadroom()
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.maxMessagesPerRead, value: 64)
            .serverChannelInitializer { channel in
                // Out of descriptors, accept fails at once and again as long as a connection waits: back off
                // instead of spinning, and count it.
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { error in
                            if error.errnoCode == EMFILE || error.errnoCode == ENFILE {
                                counters.addDrop(.noDescriptor)
                            }
                            return .milliseconds(250)
                        }
                    )
                    try channel.pipeline.syncOperations.addHandler(
                        AdmissionHandler(slot: slot, counters: counters, connections: connections)
                    )
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                // The last descriptors are kept for udpd itself (its control socket): a connection that took one
                // is closed at once, costing only that connection.
                guard !DescriptorTable.isNearlyFull else {
                    counters.addDrop(.noDescriptor)
                    return channel.close()
                }
                // The policy in place now, a moment after admission; a reload in between gives the connection the
                // newer settings, as if it had been accepted a moment later.
                let policy = slot.policy
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteCountingHandler(counters: counters))
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionGuardHandler(policy: policy, counters: counters)
                    )
                    for handler in slot.makeHandlers(counters: counters) {
                        try channel.pipeline.syncOperations.addHandler(handler)
                    }
                }
            }
        let descriptor = socket.descriptor.release()
        let channel = try await bootstrap.withBoundSocket(descriptor).get()
        // SwiftNIO calls listen() again on an adopted socket with its fixed backlog of 128 (the .backlog option
        // applies only to sockets it binds itself); listening once more restores TCPListenerSocket's backlog, as
        // Linux and the BSDs allow on a listening socket. A failure leaves the smaller backlog, which still works.
        _ = try? systemCall("listen", context: "tcp \(socket.localEndpoint)") {
            listen(descriptor, TCPListenerSocket.defaultBacklog)
        }
        return TCPListener(localEndpoint: socket.localEndpoint, serverChannel: channel, connections: connections)
    }

    /// Connections open now.
    public var openConnections: Int { connections.count }

    /// Stops accepting and closes the listening socket, freeing its port; open connections go on.
    public func stopAccepting() async {
        try? await serverChannel.close()
    }

    /// Waits up to `grace` for open connections to end, then closes those that remain.
    public func closeConnections(after grace: Duration) async {
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while connections.count > 0 && clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(50))
        }
        for channel in connections.all {
            try? await channel.close()
        }
    }
}

/// On the listening channel, ahead of SwiftNIO's acceptor: admits each accepted connection as it is accepted, on
/// the listener's event loop, so that the service's connection table sees connections in accept order (the order
/// `max-connections` evicts in) whichever event loop each one is then served on. A refused connection is closed
/// before it is registered anywhere.
///
/// `Sendable`: its state is immutable and itself `Sendable`.
private final class AdmissionHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let slot: StreamHandlerSlot
    private let counters: ListenerCounters
    private let connections: ConnectionRegistry

    init(slot: StreamHandlerSlot, counters: ListenerCounters, connections: ConnectionRegistry) {
        self.slot = slot
        self.counters = counters
        self.connections = connections
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = unwrapInboundIn(data)
        guard admit(channel, policy: slot.policy, counters: counters) else {
            channel.close(promise: nil)
            return
        }
        connections.add(channel, counters: counters)
        context.fireChannelRead(data)
    }
}

/// Checks a new connection against `allow`/`deny` and the service's connection limits before any handler is
/// added; a refused one is counted by reason, and connections evicted to make room are closed.
private func admit(_ channel: any Channel, policy: ConnectionPolicy, counters: ListenerCounters) -> Bool {
    guard let remote = channel.remoteAddress,
        let source = IPEndpoint(socketAddress: remote)?.addressBits
    else {
        return false
    }
    guard policy.filter.admits(source) else {
        counters.addDrop(.denied)
        return false
    }
    switch policy.table.admit(channel, source: source, counters: counters, policy: policy) {
    case .refusedPerSource:
        counters.addDrop(.sourceLimit)
        return false
    case .admitted(let evicted):
        for old in evicted { old.close(promise: nil) }
        return true
    }
}

/// The open connections of one listener, to be finished or closed when it stops.
///
/// `Sendable`: the registry is behind a mutex.
private final class ConnectionRegistry: Sendable {
    private let channels = Mutex(OldestFirstRegistry<ObjectIdentifier, any Channel>())

    var count: Int { channels.withLock { $0.count } }
    var all: [any Channel] { channels.withLock { $0.values } }

    func add(_ channel: any Channel, counters: ListenerCounters) {
        counters.countConnectionOpened()
        let key = ObjectIdentifier(channel)
        channels.withLock { $0.insert(channel, for: key) }
        channel.closeFuture.whenComplete { _ in
            counters.countConnectionClosed()
            self.channels.withLock { _ = $0.remove(key) }
        }
    }
}

/// Counts a connection's bytes in and out on the listener's counters.
final class ByteCountingHandler: ChannelDuplexHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let counters: ListenerCounters

    init(counters: ListenerCounters) {
        self.counters = counters
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        counters.countReceived(packets: 0, bytes: UInt64(unwrapInboundIn(data).readableBytes))
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        counters.countSent(packets: 0, bytes: UInt64(unwrapOutboundIn(data).readableBytes))
        context.write(data, promise: promise)
    }
}
