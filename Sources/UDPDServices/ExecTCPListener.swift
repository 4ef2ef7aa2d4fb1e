import Synchronization
import UDPDTransport

/// What an exec service does with each TCP connection, inetd style: after the service's `allow`/`deny` and
/// connection limits, one program per connection, with the accepted socket itself (blocking, as inetd gives it) as
/// its stdin and stdout. udpd reads nothing from it and closes its own descriptor once the program has its copy,
/// so the connection counts as closed in udpd's counters from then on; it ends when the program (and any child it
/// left holding the socket) exits or is killed at `timeout`.
///
/// Shared by the service's TCP listeners, so that `max-connections` and `max-connections-per-source` count the
/// service's connections whose program still runs, whichever port they came in on. A connection over either limit
/// is refused: udpd cannot close the oldest, whose socket is its program's.
///
/// `Sendable`: the program is `Sendable` and the counts are behind a mutex.
public final class ExecConnectionStarter: Sendable {
    let program: ExecProgram

    private struct Open {
        var total = 0
        var perSource: [IPAddressBits: Int] = [:]
    }

    private let open = Mutex(Open())

    init(program: ExecProgram) {
        self.program = program
    }

    /// Programs of this service that hold a connection now.
    public var connections: Int { open.withLock { $0.total } }

    /// Starts the program for `connection` under `policy`, or refuses it; either way udpd's descriptor is closed
    /// (the program keeps its own). Runs on the acceptor's thread and does not block.
    func start(_ connection: AcceptedConnection, policy: ConnectionPolicy, counters: ListenerCounters) {
        let socket = SocketDescriptor(taking: connection.descriptor)
        let source = connection.remote.addressBits
        guard policy.filter.admits(source) else {
            counters.addDrop(.denied)
            return socket.close()
        }
        if let refusal = reserve(source, policy: policy) {
            counters.addDrop(refusal)
            return socket.close()
        }
        counters.countConnectionOpened()
        defer { counters.countConnectionClosed() }
        let started = program.run(
            proto: "tcp",
            remote: connection.remote,
            local: connection.local,
            input: .socket(socket.release()),
            counters: counters
        ) { _ in
            self.release(source)
        }
        if !started {
            // Refused at max-instances (counted by the program): the descriptor is still udpd's.
            release(source)
            SocketDescriptor(taking: connection.descriptor).close()
        }
    }

    /// Counts a new connection from `source`, or says which limit refuses it.
    private func reserve(_ source: IPAddressBits, policy: ConnectionPolicy) -> DropReason? {
        open.withLock { open in
            if let perSource = policy.maxConnectionsPerSource, open.perSource[source, default: 0] >= perSource {
                return .sourceLimit
            }
            guard open.total < policy.maxConnections else { return .connectionLimit }
            open.total += 1
            open.perSource[source, default: 0] += 1
            return nil
        }
    }

    private func release(_ source: IPAddressBits) {
        open.withLock { open in
            open.total -= 1
            let left = open.perSource[source, default: 1] - 1
            open.perSource[source] = left > 0 ? left : nil
        }
    }
}

/// An exec service's TCP listener: its socket is accepted on by the ``ConnectionAcceptor``'s thread, not by
/// SwiftNIO, and each connection goes straight to the service's program (see ``ExecConnectionStarter``).
///
/// `Sendable`: the starter and policy in place are behind a mutex.
public final class ExecTCPListener: Sendable {
    /// The starter and policy in place, shared with the acceptor's callback.
    private final class State: Sendable {
        private final class Contents: Sendable {
            let starter: ExecConnectionStarter
            let policy: ConnectionPolicy

            init(starter: ExecConnectionStarter, policy: ConnectionPolicy) {
                self.starter = starter
                self.policy = policy
            }
        }

        private let current: Mutex<Contents>

        init(starter: ExecConnectionStarter, policy: ConnectionPolicy) {
            current = Mutex(Contents(starter: starter, policy: policy))
        }

        func replace(with starter: ExecConnectionStarter, policy: ConnectionPolicy) {
            let contents = Contents(starter: starter, policy: policy)
            current.withLock { $0 = contents }
        }

        func start(_ connection: AcceptedConnection, counters: ListenerCounters) {
            let contents = current.withLock { $0 }
            contents.starter.start(connection, policy: contents.policy, counters: counters)
        }
    }

    private let state: State
    private let acceptor: ConnectionAcceptor
    private let registration: ConnectionAcceptor.Registration

    private init(state: State, acceptor: ConnectionAcceptor, registration: ConnectionAcceptor.Registration) {
        self.state = state
        self.acceptor = acceptor
        self.registration = registration
    }

    /// Starts accepting on `socket`, which the listener owns from now on (also when this throws).
    public static func start(
        socket: TCPListenerSocket,
        starter: ExecConnectionStarter,
        policy: ConnectionPolicy,
        counters: ListenerCounters
    ) throws(SystemCallError) -> ExecTCPListener {
        let acceptor: ConnectionAcceptor
        do {
            acceptor = try ConnectionAcceptor.shared()
        } catch {
            socket.close()
            throw error
        }
        let state = State(starter: starter, policy: policy)
        let registration = try acceptor.add(socket, counters: counters) { connection in
            state.start(connection, counters: counters)
        }
        return ExecTCPListener(state: state, acceptor: acceptor, registration: registration)
    }

    /// Puts `starter` and `policy` in place for connections accepted from now on.
    public func replace(with starter: ExecConnectionStarter, policy: ConnectionPolicy) {
        state.replace(with: starter, policy: policy)
    }

    /// Stops accepting and closes the listening socket; programs keep their connections.
    public func stop() async {
        await acceptor.remove(registration)
    }
}
