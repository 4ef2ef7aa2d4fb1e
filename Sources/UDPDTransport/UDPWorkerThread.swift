import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One worker of the pool: a dedicated thread that waits for any of its sockets to become readable (epoll on
/// Linux, poll elsewhere) and serves it from one set of batch buffers.
///
/// `Sendable`: the registrations are behind a mutex, the stop flag and epoch are atomics, and the thread handle is
/// behind a mutex. Sockets are added and removed from other threads; ``remove(_:)`` returns only once the thread
/// can no longer be touching the socket, so the caller may close it.
final class UDPWorkerThread: Sendable {
    private static let wakeToken = UInt64.max

    private let registrations = Mutex<[CInt: ServedSocket]>([:])
    private let wakeup: WakeupPipe
    private let stopping = Atomic<Bool>(false)
    /// Grows after every pass of the loop; a remover waits for it to move.
    private let epoch = Atomic<UInt64>(0)
    private let thread = Mutex<WorkerThread?>(nil)
    #if os(Linux)
    private let epollDescriptor: CInt
    #endif

    init(name: String, settings: UDPWorkerSettings, batchSize: BatchSizeSetting) throws(SystemCallError) {
        wakeup = try WakeupPipe()
        #if os(Linux)
        epollDescriptor = try systemCall("epoll_create1") { epoll_create1(CInt(EPOLL_CLOEXEC)) }
        try Self.watch(epollDescriptor, wakeup.readDescriptor, token: Self.wakeToken)
        #endif
        let worker = try WorkerThread(name: name) { [self] in run(settings, batchSize: batchSize) }
        thread.withLock { $0 = worker }
    }

    deinit {
        #if os(Linux)
        close(epollDescriptor)
        #endif
    }

    /// Starts serving `served`.
    func add(_ served: ServedSocket) throws(SystemCallError) {
        let fd = served.socket.descriptor.rawValue
        registrations.withLock { $0[fd] = served }
        #if os(Linux)
        do {
            try Self.watch(epollDescriptor, fd, token: UInt64(fd))
        } catch {
            registrations.withLock { $0[fd] = nil }
            throw error
        }
        #else
        wakeup.wake()
        #endif
    }

    /// Stops serving `socket`; on return the thread no longer touches it.
    func remove(_ socket: UDPListenerSocket) {
        guard detach(socket), let seen = beginQuiesce() else { return }
        awaitQuiesce(after: seen)
    }

    /// Takes `socket` out of the registrations and epoll without waiting; returns whether it was served. The thread
    /// may still be serving it in the pass it is in: ``beginQuiesce()`` and ``awaitQuiesce(after:)`` wait for that.
    func detach(_ socket: UDPListenerSocket) -> Bool {
        let fd = socket.descriptor.rawValue
        let removed = registrations.withLock { $0.removeValue(forKey: fd) }
        guard removed != nil else { return false }
        unwatch(socket)
        return true
    }

    /// Stops serving `socket` without waiting for the loop: the socket leaves the registrations and epoll at once, and
    /// a pass that already took it keeps it alive through its own reference until it ends.
    func retire(_ socket: UDPListenerSocket) {
        let fd = socket.descriptor.rawValue
        let removed = registrations.withLock { registered -> ServedSocket? in
            guard registered[fd]?.socket === socket else { return nil }
            return registered.removeValue(forKey: fd)
        }
        guard removed != nil else { return }
        unwatch(socket)
    }

    /// Takes `socket` out of epoll, by its number while it is held open; a socket already closing needs nothing:
    /// closing removes it from epoll.
    private func unwatch(_ socket: UDPListenerSocket) {
        #if os(Linux)
        let epoll = epollDescriptor
        _ = socket.descriptor.withDescriptor { fd in epoll_ctl(epoll, EPOLL_CTL_DEL, fd, nil) }
        #endif
    }

    /// Wakes the loop so that it ends the pass it is in; returns the epoch to wait past, or `nil` when the thread is
    /// not running (nothing to wait for). Several threads can be woken before waiting for any of them.
    func beginQuiesce() -> UInt64? {
        guard !stopping.load(ordering: .acquiring), thread.withLock({ $0 != nil }) else { return nil }
        let seen = epoch.load(ordering: .acquiring)
        wakeup.wake()
        return seen
    }

    /// Waits until the loop has finished the pass it was in when ``beginQuiesce()`` returned `seen` (a loop that stops
    /// counts its end as a pass), at most 2 s. A woken loop usually ends its pass within microseconds, so the first
    /// waits yield the CPU rather than sleep a whole timer slice. Giving up is safe: a pass holds the socket open
    /// (``SocketDescriptor/withDescriptor(_:)``), so closing it afterwards takes effect when the pass ends.
    func awaitQuiesce(after seen: UInt64) {
        var attempts = 0
        var waited = 0
        while epoch.load(ordering: .acquiring) == seen && waited < 2_000_000 {
            if attempts < 50 {
                attempts += 1
                sched_yield()
            } else {
                usleep(100)
                waited += 100
            }
        }
    }

    /// Stops the thread and waits for it.
    func stop() {
        stopping.store(true, ordering: .releasing)
        wakeup.wake()
        let worker = thread.withLock { current -> WorkerThread? in
            defer { current = nil }
            return current
        }
        worker?.join()
    }

    /// Sockets served now.
    var socketCount: Int { registrations.withLock { $0.count } }

    #if os(Linux)
    private static func watch(_ epoll: CInt, _ fd: CInt, token: UInt64) throws(SystemCallError) {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = token
        try systemCall("epoll_ctl") { epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) }
    }
    #endif

    private func run(_ settings: UDPWorkerSettings, batchSize: BatchSizeSetting) {
        var batch = DatagramBatch(capacity: batchSize.current, bufferSize: settings.bufferSize)
        /// A new batch when a reload changed the size; between passes, when nothing is queued in the old one.
        func resize() {
            let wanted = batchSize.current
            if wanted != batch.capacity { batch = DatagramBatch(capacity: wanted, bufferSize: settings.bufferSize) }
        }
        var useBatchCalls = true
        #if os(Linux)
        let capacity = 64
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while !stopping.load(ordering: .acquiring) {
            let ready = (try? systemCall("epoll_wait") { epoll_wait(epollDescriptor, events, CInt(capacity), -1) }) ?? 0
            resize()
            for index in 0..<Int(ready) {
                let token = events[index].data.u64
                if token == Self.wakeToken {
                    drainWakeups()
                    continue
                }
                guard let served = registrations.withLock({ $0[CInt(truncatingIfNeeded: token)] }) else { continue }
                _ = batch.drain(served, maximumBatches: 8, useBatchCalls: &useBatchCalls)
            }
            batch.flushRelays()
            epoch.wrappingAdd(1, ordering: .releasing)
        }
        #else
        while !stopping.load(ordering: .acquiring) {
            let served = registrations.withLock { Array($0.values) }
            var fds = [pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)]
            fds += served.map { pollfd(fd: $0.socket.descriptor.rawValue, events: Int16(POLLIN), revents: 0) }
            _ = try? systemCall("poll") { poll(&fds, nfds_t(fds.count), -1) }
            resize()
            if fds[0].revents != 0 { drainWakeups() }
            for (index, socket) in served.enumerated() where fds[index + 1].revents != 0 {
                if registrations.withLock({ $0[socket.socket.descriptor.rawValue] }) === socket {
                    _ = batch.drain(socket, maximumBatches: 8, useBatchCalls: &useBatchCalls)
                }
            }
            batch.flushRelays()
            epoch.wrappingAdd(1, ordering: .releasing)
        }
        #endif
        epoch.wrappingAdd(1, ordering: .releasing)
    }

    private func drainWakeups() {
        var bytes: (UInt64, UInt64) = (0, 0)
        while read(wakeup.readDescriptor, &bytes, MemoryLayout.size(ofValue: bytes)) > 0 {}
    }
}
