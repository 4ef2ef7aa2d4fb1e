import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A connection accepted by the ``ConnectionAcceptor``: a blocking socket (as inetd hands its programs), marked
/// close-on-exec, and its two addresses. Whoever receives it owns the descriptor and must close it.
public struct AcceptedConnection: Sendable {
    /// The connected socket, in blocking mode.
    public var descriptor: CInt
    /// The client's address and port.
    public var remote: IPEndpoint
    /// The local address and port the client connected to.
    public var local: IPEndpoint
}

/// Accepts the connections of listening sockets on one thread udpd owns, inetd style: each accepted socket is
/// handed, with its addresses, to its listener's `onAccept`, which runs on that thread and must not block.
///
/// exec listeners use it so that each program gets its connection directly, without a SwiftNIO channel in
/// between (whose descriptor SwiftNIO does not expose and keeps non-blocking). The listening sockets are
/// non-blocking and polled, so a connection that goes away between poll and accept costs nothing. Out of
/// descriptors (EMFILE, ENFILE) or kernel memory, a listener is counted (`no_descriptor`) and left out of
/// the poll for ``backoff``, instead of being retried at once for as long as the shortage lasts.
///
/// `Sendable`: changes reach the thread through a mutex and a wakeup pipe; everything else lives on the thread.
public final class ConnectionAcceptor: Sendable {
    /// What a listener registered; the acceptor's thread owns its socket until it is removed.
    public struct Registration: Sendable, Hashable {
        let id: Int
    }

    /// How long a listener whose accept ran out of descriptors waits before it tries again.
    public static let backoff = Duration.milliseconds(100)
    /// At most this many connections are accepted from one listener per turn, so that one busy listener does not
    /// starve the others.
    static let acceptsPerTurn = 64

    fileprivate struct Changes {
        var nextID = 0
        var added: [(Int, ConnectionAcceptorLoop.Entry)] = []
        var removed: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private static let instance = Mutex<ConnectionAcceptor?>(nil)

    /// The process-wide acceptor, whose thread starts on first use; throws when the thread cannot be started
    /// (out of descriptors or threads), so that only the listener that needed it fails.
    public static func shared() throws(SystemCallError) -> ConnectionAcceptor {
        try instance.withLock { (acceptor) throws(SystemCallError) -> ConnectionAcceptor in
            if let acceptor { return acceptor }
            let started = try ConnectionAcceptor()
            acceptor = started
            return started
        }
    }

    private let changes = Mutex(Changes())
    private let wakeup: WakeupPipe

    private init() throws(SystemCallError) {
        let wakeup = try WakeupPipe()
        self.wakeup = wakeup
        let thread = try WorkerThread(name: "udpd-accept") { [unowned self] in
            var loop = ConnectionAcceptorLoop(wakeup: wakeup)
            loop.run {
                self.changes.withLock { changes in
                    defer { (changes.added, changes.removed) = ([], []) }
                    return (changes.added, changes.removed)
                }
            }
        }
        _ = thread  // runs as long as the process
    }

    /// Starts accepting on `socket`, which the acceptor owns from now on, also when this throws (it is made
    /// non-blocking). Each accepted connection goes to `onAccept` on the acceptor's thread; a shortage of
    /// descriptors is counted on `counters`.
    public func add(
        _ socket: TCPListenerSocket,
        counters: ListenerCounters,
        onAccept: @escaping @Sendable (AcceptedConnection) -> Void
    ) throws(SystemCallError) -> Registration {
        do {
            try setNonBlocking(socket.descriptor.rawValue, true, context: "tcp \(socket.localEndpoint)")
        } catch {
            socket.close()
            throw error
        }
        let descriptor = SocketDescriptor(taking: socket.descriptor.release())
        let id = changes.withLock { changes in
            let id = changes.nextID
            changes.nextID += 1
            changes.added.append(
                (id, ConnectionAcceptorLoop.Entry(socket: descriptor, counters: counters, onAccept: onAccept))
            )
            return id
        }
        wakeup.wake()
        return Registration(id: id)
    }

    /// Stops accepting for `registration` and closes its socket, freeing the port (unless another descriptor of
    /// the same socket is open); returns once the socket is closed. Connections already handed on are not
    /// affected.
    public func remove(_ registration: Registration) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            changes.withLock { $0.removed.append((registration.id, continuation)) }
            wakeup.wake()
        }
    }
}

/// The acceptor's loop; lives on its thread only.
private struct ConnectionAcceptorLoop {
    struct Entry {
        var socket: SocketDescriptor
        var counters: ListenerCounters
        var onAccept: @Sendable (AcceptedConnection) -> Void
        /// Left out of the poll until then, after running out of descriptors.
        var resumeAt: ContinuousClock.Instant?
    }

    let wakeup: WakeupPipe
    var entries: [Int: Entry] = [:]
    let clock = ContinuousClock()

    init(wakeup: WakeupPipe) {
        self.wakeup = wakeup
    }

    /// Applies changes, polls every listener not backing off (and the wakeup pipe), and accepts what is ready.
    mutating func run(
        take: () -> ([(Int, Entry)], [(Int, CheckedContinuation<Void, Never>)])
    ) {
        var fds: [pollfd] = []
        var order: [Int] = []
        while true {
            drainWakeup()
            let (added, removed) = take()
            for (id, entry) in added { entries[id] = entry }
            for (id, continuation) in removed {
                entries.removeValue(forKey: id)?.socket.close()
                continuation.resume()
            }
            let now = clock.now
            var timeout: Duration? = nil
            fds.removeAll(keepingCapacity: true)
            order.removeAll(keepingCapacity: true)
            fds.append(pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0))
            for (id, entry) in entries {
                if let resumeAt = entry.resumeAt, resumeAt > now {
                    timeout = min(timeout ?? resumeAt - now, resumeAt - now)
                    continue
                }
                fds.append(pollfd(fd: entry.socket.rawValue, events: Int16(POLLIN), revents: 0))
                order.append(id)
            }
            let milliseconds =
                timeout.map {
                    max(1, CInt($0.components.seconds * 1000 + $0.components.attoseconds / 1_000_000_000_000_000) + 1)
                } ?? -1
            guard let ready = try? systemCall("poll", { poll(&fds, nfds_t(fds.count), milliseconds) }) else {
                usleep(10_000)  // poll itself failed (out of memory): wait rather than spin
                continue
            }
            guard ready > 0 else { continue }
            for (index, id) in order.enumerated() where fds[index + 1].revents != 0 {
                acceptReady(id)
            }
        }
    }

    /// Accepts up to ``ConnectionAcceptor/acceptsPerTurn`` connections of listener `id`.
    private mutating func acceptReady(_ id: Int) {
        guard let entry = entries[id] else { return }
        let fd = entry.socket.rawValue
        for _ in 0..<ConnectionAcceptor.acceptsPerTurn {
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let accepted: CInt?
            do throws(SystemCallError) {
                accepted = try withUnsafeMutablePointer(to: &storage) { (pointer) throws(SystemCallError) in
                    try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(SystemCallError) in
                        // Without SOCK_NONBLOCK: the program gets a blocking socket, as inetd gives.
                        try nonBlockingSystemCall("accept4") { cudpd_accept_cloexec(fd, address, &length) }
                    }
                }
            } catch  where Self.isShortage(error.errno) {
                entry.counters.addDrop(.noDescriptor)
                let resumeAt = clock.now + ConnectionAcceptor.backoff
                entries[id]?.resumeAt = resumeAt
                return
            } catch  where Self.isTransient(error.errno) {
                continue  // the client went away before it was accepted
            } catch {
                // Unexpected: never retried at once, so that it cannot spin.
                entry.counters.addDrop(.handlerFailed)
                let resumeAt = clock.now + ConnectionAcceptor.backoff
                entries[id]?.resumeAt = resumeAt
                return
            }
            guard let accepted else { return }
            let connection = SocketDescriptor(taking: accepted)
            guard let remote = withUnsafeBytes(of: &storage, { IPEndpoint($0.baseAddress!) }),
                let local = try? connection.localEndpoint(context: "an accepted connection")
            else {
                connection.close()
                entry.counters.addDrop(.handlerFailed)
                continue
            }
            entry.onAccept(AcceptedConnection(descriptor: connection.release(), remote: remote, local: local))
        }
    }

    /// Out of descriptors (this process's or the system's) or of kernel memory: trying again at once fails again.
    private static func isShortage(_ error: CInt) -> Bool {
        error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM
    }

    /// The connection failed before it was accepted (Linux reports some network errors on accept).
    private static func isTransient(_ error: CInt) -> Bool {
        [ECONNABORTED, EPROTO, EPERM, ENETDOWN, ENOPROTOOPT, EHOSTDOWN, ENONET, EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH]
            .contains(error)
    }

    private func drainWakeup() {
        var bytes = [UInt8](repeating: 0, count: 64)
        let fd = wakeup.readDescriptor
        while let count = try? nonBlockingSystemCall("read", { read(fd, &bytes, bytes.count) }), count > 0 {}
    }
}

extension TCPListenerSocket {
    /// A second close-on-exec descriptor of the same listening socket: the port stays bound until both are
    /// closed, so a listener can move from one acceptor to another (SwiftNIO, the ``ConnectionAcceptor``) while
    /// its queued connections wait.
    public func duplicate() throws(SystemCallError) -> TCPListenerSocket {
        let fd = descriptor.rawValue
        let copy = try systemCall("fcntl", context: "F_DUPFD_CLOEXEC tcp \(localEndpoint)") {
            fcntl(fd, F_DUPFD_CLOEXEC, 3)
        }
        return TCPListenerSocket(descriptor: SocketDescriptor(taking: copy), localEndpoint: localEndpoint)
    }
}
