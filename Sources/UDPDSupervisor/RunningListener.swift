import Logging
import NIOCore
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
}

/// A listener that is serving: its socket, the worker or channel serving it, the slot its handler sits in, and its
/// counters. A reload that keeps the listener swaps only the handler.
///
/// `Sendable`: every stored property is immutable and itself `Sendable`.
final class RunningListener: Sendable {
    enum Serving: Sendable {
        case udp([UDPListenerSocket], UDPPoolRegistration, DatagramHandlerSlot)
        case tcp(TCPListener, StreamHandlerSlot)
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
            let slot = StreamHandlerSlot(handlers.stream, policy: handlers.connectionPolicy)
            let listener = try await TCPListener.start(socket: tcp, group: group, slot: slot, counters: counters)
            return RunningListener(key: key, counters: counters, serving: .tcp(listener, slot))
        }
    }

    /// How replies leave from the right address, for status.
    var replySource: ReplySource {
        switch serving {
        case .udp(let sockets, _, _): sockets.first?.replySource ?? .kernel
        case .tcp: .connection
        }
    }

    /// Puts new handlers in place; the socket and its queued datagrams stay.
    func replaceHandlers(with handlers: ServiceHandlerSet) {
        switch serving {
        case .udp(_, _, let slot): slot.replace(with: handlers.datagram)
        case .tcp(_, let slot): slot.replace(with: handlers.stream, policy: handlers.connectionPolicy)
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
    /// caller, who closes them after the grace period.
    func stop(pool: UDPWorkerPool) async -> TCPListener? {
        switch serving {
        case .udp(let sockets, let registration, _):
            pool.remove(registration)
            sockets.forEach { $0.close() }
            return nil
        case .tcp(let listener, _):
            await listener.stopAccepting()
            return listener
        }
    }
}
