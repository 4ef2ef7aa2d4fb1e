import Logging
import NIOCore
import Synchronization
import UDPDServices
import UDPDTransport

/// A socket bound for a listener but not yet served: what a reload holds while it checks that every bind succeeded.
enum BoundSocket: Sendable {
    /// A UDP listener's sockets, one per worker.
    case udp([UDPListenerSocket])
    case tcp(TCPListenerSocket)

    /// Binds the sockets a planned listener needs.
    static func bind(_ planned: PlannedListener) throws(BindError) -> BoundSocket {
        switch planned.key.proto {
        case .udp:
            .udp(
                try UDPListenerSocket.bindGroup(planned.key.endpoint, count: planned.workers, options: planned.options)
            )
        case .tcp:
            .tcp(try TCPListenerSocket.bind(planned.key.endpoint, options: planned.options))
        }
    }

    /// Closes sockets that will not be served after all.
    func close() {
        switch self {
        case .udp(let sockets): sockets.forEach { $0.close() }
        case .tcp(let socket): socket.close()
        }
    }
}

/// The handlers a service's listeners run; built before anything changes, so a reload can fail without effect.
struct ServiceHandlerSet: Sendable {
    var datagram: any DatagramHandler
    var stream: StreamHandlerSlot.Factory
    /// Sessions or programs the handlers hold open now.
    var activity: ServiceActivity
    /// The TCP limits; its connection table is the service's, kept across reloads.
    var connectionPolicy: ConnectionPolicy
    /// For an exec service: its TCP listeners accept their own connections and hand each to this.
    var execConnections: ExecConnectionStarter? = nil
}

/// A listener that is serving: its socket, the worker or channel serving it, the slot its handler sits in, and its
/// counters. A reload that keeps the listener swaps only the handler.
///
/// `Sendable`: every stored property is immutable and itself `Sendable`.
final class RunningListener: Sendable {
    enum Serving: Sendable {
        case udp([UDPListenerSocket], UDPPoolRegistration, DatagramHandlerSlot)
        case tcp(TCPServing)
    }

    let key: ListenerKey
    let counters: ListenerCounters
    let serving: Serving

    private init(key: ListenerKey, counters: ListenerCounters, serving: Serving) {
        self.key = key
        self.counters = counters
        self.serving = serving
    }

    /// Starts serving a bound socket with `handlers`.
    static func start(
        _ socket: BoundSocket,
        key: ListenerKey,
        service: String,
        handlers: ServiceHandlerSet,
        group: any EventLoopGroup,
        pool: UDPWorkerPool
    ) async throws -> RunningListener {
        let counters = ListenerCounters()
        switch socket {
        case .udp(let sockets):
            let slot = DatagramHandlerSlot(handlers.datagram)
            let registration = try pool.add(sockets, slot: slot, counters: counters)
            return RunningListener(key: key, counters: counters, serving: .udp(sockets, registration, slot))
        case .tcp(let tcp):
            let serving = try await TCPServing.start(tcp, handlers: handlers, group: group, counters: counters)
            return RunningListener(key: key, counters: counters, serving: .tcp(serving))
        }
    }

    /// How replies leave from the right address, for status.
    var replySource: ReplySource {
        switch serving {
        case .udp(let sockets, _, _): sockets.first?.replySource ?? .kernel
        case .tcp: .connection
        }
    }

    /// Puts new handlers in place; the socket and its queued datagrams and connections stay. A TCP listener
    /// whose service becomes or stops being exec moves to the other acceptor: the SwiftNIO listener it leaves is
    /// returned, for its open connections to drain. A move that fails is returned as an error for the reload's
    /// report; the listener then keeps its acceptor, whose connections are refused (`handler_failed`).
    func replaceHandlers(with handlers: ServiceHandlerSet) async -> (draining: TCPListener?, error: String?) {
        switch serving {
        case .udp(_, _, let slot):
            slot.replace(with: handlers.datagram)
            return (nil, nil)
        case .tcp(let tcp):
            return await tcp.replace(with: handlers, counters: counters)
        }
    }

    /// UDP sockets (workers) serving the listener; 1 for TCP.
    var workerCount: Int {
        switch serving {
        case .udp(let sockets, _, _): sockets.count
        case .tcp: 1
        }
    }

    /// Stops serving and closes the socket, freeing the port; TCP connections still open are returned to the
    /// caller, who closes them after the grace period. The pool waits for its threads to leave the socket (at most
    /// 2 s); a pass that takes longer keeps the socket open until it ends, so its number is never reused under it.
    func stop(pool: UDPWorkerPool) async -> TCPListener? {
        switch serving {
        case .udp(let sockets, let registration, _):
            pool.remove(registration)
            sockets.forEach { $0.close() }
            return nil
        case .tcp(let tcp):
            return await tcp.stop()
        }
    }
}

/// A TCP listener's socket and what accepts on it: a SwiftNIO server channel, or (for an exec service, whose
/// programs get their connections themselves) the ``ConnectionAcceptor``'s thread.
///
/// The listener keeps its own descriptor of the socket and gives the acceptor a duplicate, so that a reload that
/// makes its service exec (or no longer exec) can move the socket, its port and its queued connections from one
/// acceptor to the other.
///
/// `Sendable`: the socket is `Sendable`, the acceptor in place is behind a mutex.
final class TCPServing: Sendable {
    enum Acceptor: Sendable {
        case channel(TCPListener, StreamHandlerSlot)
        case exec(ExecTCPListener)
    }

    let socket: TCPListenerSocket
    private let group: any EventLoopGroup
    private let acceptor: Mutex<Acceptor?>

    private init(socket: TCPListenerSocket, group: any EventLoopGroup, acceptor: Acceptor) {
        self.socket = socket
        self.group = group
        self.acceptor = Mutex(acceptor)
    }

    /// Starts accepting on `socket` (which it owns from now on) with the acceptor `handlers` need.
    static func start(
        _ socket: TCPListenerSocket,
        handlers: ServiceHandlerSet,
        group: any EventLoopGroup,
        counters: ListenerCounters
    ) async throws -> TCPServing {
        do {
            let acceptor = try await makeAcceptor(socket, handlers: handlers, group: group, counters: counters)
            return TCPServing(socket: socket, group: group, acceptor: acceptor)
        } catch {
            socket.close()
            throw error
        }
    }

    private static func makeAcceptor(
        _ socket: TCPListenerSocket,
        handlers: ServiceHandlerSet,
        group: any EventLoopGroup,
        counters: ListenerCounters
    ) async throws -> Acceptor {
        let copy = try socket.duplicate()
        if let starter = handlers.execConnections {
            let listener = try ExecTCPListener.start(
                socket: copy,
                starter: starter,
                policy: handlers.connectionPolicy,
                counters: counters
            )
            return .exec(listener)
        }
        let slot = StreamHandlerSlot(handlers.stream, policy: handlers.connectionPolicy)
        do {
            let listener = try await TCPListener.start(socket: copy, group: group, slot: slot, counters: counters)
            return .channel(listener, slot)
        } catch {
            copy.close()
            throw error
        }
    }

    /// See ``RunningListener/replaceHandlers(with:)``.
    func replace(with handlers: ServiceHandlerSet, counters: ListenerCounters) async -> (TCPListener?, String?) {
        switch (acceptor.withLock { $0 }, handlers.execConnections) {
        case (.channel(_, let slot), nil):
            slot.replace(with: handlers.stream, policy: handlers.connectionPolicy)
            return (nil, nil)
        case (.exec(let listener), let starter?):
            listener.replace(with: starter, policy: handlers.connectionPolicy)
            return (nil, nil)
        case (let old?, _):
            let next: Acceptor
            do {
                next = try await Self.makeAcceptor(socket, handlers: handlers, group: group, counters: counters)
            } catch {
                if case .channel(_, let slot) = old {
                    slot.replace(with: handlers.stream, policy: handlers.connectionPolicy)
                }
                return (nil, "cannot move \(socket.localEndpoint) to its new handler: \(error)")
            }
            acceptor.withLock { $0 = next }
            switch old {
            case .channel(let listener, _):
                await listener.stopAccepting()
                return (listener, nil)
            case .exec(let listener):
                await listener.stop()
                return (nil, nil)
            }
        case (nil, _):
            return (nil, nil)
        }
    }

    /// Stops accepting and closes the socket, freeing the port; returns the SwiftNIO listener whose connections
    /// are still open, for the caller to close after the grace period.
    func stop() async -> TCPListener? {
        let old = acceptor.withLock { acceptor in
            defer { acceptor = nil }
            return acceptor
        }
        defer { socket.close() }
        switch old {
        case .channel(let listener, _)?:
            await listener.stopAccepting()
            return listener
        case .exec(let listener)?:
            await listener.stop()
            return nil
        case nil:
            return nil
        }
    }
}
