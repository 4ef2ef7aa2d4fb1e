import CUDPD
import Synchronization

/// The threads that serve every UDP listener socket of the daemon.
///
/// Threads are few (by default one per CPU) whatever the number of services: each waits on all the sockets given
/// to it. A listener with `workers: N` has N sockets on the same port (SO_REUSEPORT), each given to a different
/// thread, so one port is served by N threads in parallel. The pool grows when a configuration asks for more
/// workers than it has threads; it never shrinks while udpd runs.
///
/// `Sendable`: the thread list is behind a mutex; each thread is itself `Sendable`.
public final class UDPWorkerPool: Sendable {
    private let settings: UDPWorkerSettings
    private let batchSizeSetting: BatchSizeSetting
    private let threads = Mutex<[UDPWorkerThread]>([])
    private let nextThread = Atomic<Int>(0)
    /// udpd's own UDP listeners, whose datagrams every thread refuses to answer; the supervisor publishes them.
    public let ownListeners = OwnListenerRegistry()

    /// Starts `threadCount` threads.
    public init(threadCount: Int, settings: UDPWorkerSettings = UDPWorkerSettings()) throws(SystemCallError) {
        self.settings = settings
        self.batchSizeSetting = BatchSizeSetting(settings.batchSize)
        try grow(to: threadCount)
    }

    /// Datagrams each thread takes per recvmmsg and answers per sendmmsg.
    public var batchSize: Int { batchSizeSetting.current }

    /// Changes the batch size (1 to 1024) of every thread, each from its next wake-up, without stopping any.
    public func setBatchSize(_ size: Int) {
        precondition((1...1024).contains(size), "a batch holds 1 to 1024 datagrams")
        batchSizeSetting.set(size)
    }

    /// The number of CPUs the process may run on: the default thread count.
    ///
    /// Read once: sysconf opens and parses a file in /sys on every call, and the reload of a 1,000-service file
    /// asked it a thousand times.
    public static let defaultThreadCount: Int = max(1, SystemInfo.onlineProcessorCount)

    /// Threads running now.
    public var threadCount: Int { threads.withLock { $0.count } }

    /// Adds threads until there are `count`.
    public func grow(to count: Int) throws(SystemCallError) {
        let current = threadCount
        guard count > current else { return }
        var started: [UDPWorkerThread] = []
        for index in current..<count {
            started.append(
                try UDPWorkerThread(name: "udpd-udp-\(index)", settings: settings, batchSize: batchSizeSetting)
            )
        }
        threads.withLock { $0.append(contentsOf: started) }
    }

    /// Serves `sockets`, the workers of one listener, each on a different thread (as long as there are enough).
    /// Returns what ``remove(_:)`` needs to stop serving them.
    public func add(
        _ sockets: [UDPListenerSocket],
        slot: DatagramHandlerSlot,
        counters: ListenerCounters
    ) throws(SystemCallError) -> UDPPoolRegistration {
        try grow(to: sockets.count)
        let all = threads.withLock { $0 }
        let first = nextThread.wrappingAdd(1, ordering: .relaxed).oldValue
        var placed: [(UDPWorkerThread, UDPListenerSocket)] = []
        do {
            for (offset, socket) in sockets.enumerated() {
                let thread = all[Self.turn(first &+ offset, of: all.count)]
                let served = ServedSocket(socket: socket, slot: slot, counters: counters, ownListeners: ownListeners)
                try thread.add(served)
                placed.append((thread, socket))
            }
        } catch {
            for (thread, socket) in placed { thread.remove(socket) }
            throw error
        }
        return UDPPoolRegistration(placements: placed)
    }

    /// Stops serving a listener's sockets; on return no thread touches them, so they may be closed.
    public func remove(_ registration: UDPPoolRegistration) {
        remove([registration])
    }

    /// Stops serving the sockets of several listeners; on return no thread touches them, so they may be closed.
    ///
    /// Every socket leaves its thread first; then each thread involved is woken once and all are waited for
    /// together, instead of one wake and wait per socket.
    public func remove(_ registrations: [UDPPoolRegistration]) {
        var involved: [ObjectIdentifier: UDPWorkerThread] = [:]
        for registration in registrations {
            for (thread, socket) in registration.placements where thread.detach(socket) {
                involved[ObjectIdentifier(thread)] = thread
            }
        }
        let waits = involved.values.compactMap { thread in thread.beginQuiesce().map { (thread, $0) } }
        for (thread, seen) in waits { thread.awaitQuiesce(after: seen) }
    }

    /// Serves one socket of the daemon's own, such as a forward session's upstream socket, with `handler`, on the
    /// next thread in turn. Returns what ``retire(_:)`` needs to stop serving it.
    public func register(
        _ socket: UDPListenerSocket,
        handler: any DatagramHandler,
        counters: ListenerCounters
    ) throws(SystemCallError) -> UDPPoolRegistration {
        let all = threads.withLock { $0 }
        guard !all.isEmpty else {
            throw SystemCallError(call: "epoll_ctl", errno: ESHUTDOWN, context: "the UDP worker pool is stopped")
        }
        let thread = all[Self.turn(nextThread.wrappingAdd(1, ordering: .relaxed).oldValue, of: all.count)]
        let slot = DatagramHandlerSlot(handler)
        let served = ServedSocket(socket: socket, slot: slot, counters: counters, ownListeners: ownListeners)
        try thread.add(served)
        return UDPPoolRegistration(placements: [(thread, socket)], slot: slot)
    }

    /// Stops serving a registration's sockets without waiting: unlike ``remove(_:)``, it may be called from a pool
    /// thread (a handler ending a session), where waiting for the thread's pass would wait for itself.
    ///
    /// A pass already under way may still serve the socket once more: it holds its own reference to it, so the
    /// descriptor stays open until that pass ends. So the caller must never close the socket itself; it is closed
    /// when its last reference goes.
    public func retire(_ registration: UDPPoolRegistration) {
        for (thread, socket) in registration.placements { thread.retire(socket) }
    }

    /// The thread whose turn `ticket` is, among `count`: the ticket counter wraps (to negative numbers too), and a
    /// negative remainder must never become an index.
    private static func turn(_ ticket: Int, of count: Int) -> Int {
        Int(UInt(bitPattern: ticket) % UInt(count))
    }

    /// Stops every thread and waits for them.
    public func shutdown() {
        let all = threads.withLock { current -> [UDPWorkerThread] in
            defer { current = [] }
            return current
        }
        for thread in all { thread.stop() }
    }
}

/// Which pool threads serve which sockets of one listener.
///
/// `Sendable`: immutable, of `Sendable` parts.
public struct UDPPoolRegistration: Sendable {
    fileprivate let placements: [(UDPWorkerThread, UDPListenerSocket)]
    /// The handler of a socket registered alone (``UDPWorkerPool/register(_:handler:counters:)``); `nil` for a
    /// listener's, whose slot its owner keeps.
    fileprivate var slot: DatagramHandlerSlot? = nil

    /// Serves the socket with `handler` from its next batch on (a forward session handed to a reloaded service's
    /// new handler), without touching the socket: nothing queued on it is lost.
    public func replaceHandler(with handler: any DatagramHandler) {
        slot?.replace(with: handler)
    }
}

/// Facts about the machine.
public enum SystemInfo {
    /// The number of processors online.
    public static var onlineProcessorCount: Int {
        Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
