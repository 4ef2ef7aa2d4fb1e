import Logging
import NIOCore
import UDPDServices
import UDPDTransport

/// A socket bound for a listener but not yet served: what a reload holds while it checks that every bind succeeded.
enum BoundSocket: Sendable {
    case udp(UDPListenerSocket)
    case tcp(TCPListenerSocket)

    /// Binds the socket a planned listener needs.
    static func bind(_ planned: PlannedListener) throws(BindError) -> BoundSocket {
        switch planned.key.proto {
        case .udp: .udp(try UDPListenerSocket.bind(planned.key.endpoint, options: planned.options))
        case .tcp: .tcp(try TCPListenerSocket.bind(planned.key.endpoint, options: planned.options))
        }
    }

    /// Closes a socket that will not be served after all.
    func close() {
        switch self {
        case .udp(let socket): socket.close()
        case .tcp(let socket): socket.close()
        }
    }
}

/// The handlers a service's listeners run; built before anything changes, so a reload can fail without effect.
struct ServiceHandlerSet: Sendable {
    var datagram: any DatagramHandler
    var stream: StreamHandlerSlot.Factory
}

/// A listener that is serving: its socket, the worker or channel serving it, the slot its handler sits in, and its
/// counters. A reload that keeps the listener swaps only the handler.
///
/// `Sendable`: every stored property is immutable and itself `Sendable`.
final class RunningListener: Sendable {
    enum Serving: Sendable {
        case udp(UDPListenerSocket, UDPWorker, DatagramHandlerSlot)
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
        group: any EventLoopGroup
    ) async throws -> RunningListener {
        let counters = ListenerCounters()
        switch socket {
        case .udp(let udp):
            let slot = DatagramHandlerSlot(handlers.datagram)
            let worker = try UDPWorker(socket: udp, slot: slot, counters: counters, name: "udp:\(key.endpoint.port)")
            return RunningListener(key: key, counters: counters, serving: .udp(udp, worker, slot))
        case .tcp(let tcp):
            let slot = StreamHandlerSlot(handlers.stream)
            let listener = try await TCPListener.start(socket: tcp, group: group, slot: slot, counters: counters)
            return RunningListener(key: key, counters: counters, serving: .tcp(listener, slot))
        }
    }

    /// How replies leave from the right address, for status.
    var replySource: ReplySource {
        switch serving {
        case .udp(let socket, _, _): socket.replySource
        case .tcp: .connection
        }
    }

    /// Puts new handlers in place; the socket and its queued datagrams stay.
    func replaceHandlers(with handlers: ServiceHandlerSet) {
        switch serving {
        case .udp(_, _, let slot): slot.replace(with: handlers.datagram)
        case .tcp(_, let slot): slot.replace(with: handlers.stream)
        }
    }

    /// Stops serving and closes the socket, freeing the port; TCP connections still open are returned to the
    /// caller, who closes them after the grace period.
    func stop() async -> TCPListener? {
        switch serving {
        case .udp(let socket, let worker, _):
            worker.stop()
            socket.close()
            return nil
        case .tcp(let listener, _):
            await listener.stopAccepting()
            return listener
        }
    }
}
