import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Waits for TCP connects started elsewhere (a transparent forward's upstream connections, whose sockets SwiftNIO
/// cannot make) to finish, on one thread of its own, so that no event loop or worker waits for a handshake.
///
/// A socket whose connect is under way is watched for writability; then `SO_ERROR` says whether it connected. One
/// that has not finished by its deadline fails with ETIMEDOUT and is closed. Completions run on the watcher's
/// thread and must only hand the result on (complete a promise).
///
/// `Sendable`: the watched sockets are behind a mutex; the epoll set and the wake-up pipe are only used through
/// system calls, which the kernel serialises.
final class StreamConnectWatcher: Sendable {
    private struct Pending: Sendable {
        var socket: SocketDescriptor
        var deadline: ContinuousClock.Instant
        var completion: @Sendable (Result<SocketDescriptor, SystemCallError>) -> Void
    }

    private static let wakeToken = UInt64.max
    private let pending = Mutex<[CInt: Pending]>([:])
    #if os(Linux)
    private let epollDescriptor: CInt
    private let wakeup: WakeupPipe
    #endif

    /// Starts the watcher's thread, which lives as long as the process.
    init() throws(SystemCallError) {
        #if os(Linux)
        epollDescriptor = try systemCall("epoll_create1") { epoll_create1(CInt(EPOLL_CLOEXEC)) }
        wakeup = try WakeupPipe()
        var event = epoll_event()
        event.events = EPOLLIN.rawValue
        event.data.u64 = Self.wakeToken
        try systemCall("epoll_ctl") { epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, wakeup.readDescriptor, &event) }
        _ = try WorkerThread(name: "udpd-connect") { [self] in run() }
        #else
        throw SystemCallError(call: "epoll_create1", errno: ENOSYS, context: "transparent TCP needs Linux")
        #endif
    }

    /// Calls `completion` once `socket` connected or failed, or with ETIMEDOUT after `timeout`.
    func watch(
        _ socket: SocketDescriptor,
        timeout: Duration,
        completion: @escaping @Sendable (Result<SocketDescriptor, SystemCallError>) -> Void
    ) {
        #if os(Linux)
        let fd = socket.rawValue
        let deadline = ContinuousClock.now.advanced(by: timeout)
        pending.withLock { $0[fd] = Pending(socket: socket, deadline: deadline, completion: completion) }
        var event = epoll_event()
        event.events = EPOLLOUT.rawValue | EPOLLONESHOT.rawValue
        event.data.u64 = UInt64(fd)
        do {
            try systemCall("epoll_ctl") { epoll_ctl(epollDescriptor, EPOLL_CTL_ADD, fd, &event) }
        } catch {
            pending.withLock { $0[fd] = nil }
            return completion(.failure(error))
        }
        // The thread recomputes how long it may sleep.
        wakeup.wake()
        #endif
    }

    #if os(Linux)
    private func run() {
        let capacity = 32
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity)
        defer { events.deallocate() }
        while true {
            let nearest = pending.withLock { $0.values.map(\.deadline).min() }
            // Rounded up to the next millisecond, so that a wake-up never comes before the deadline.
            let wait = nearest.map { deadline -> CInt in
                let left = ContinuousClock.now.duration(to: deadline).saturatingNanoseconds
                return CInt(clamping: max(left, 0) / 1_000_000 + 1)
            } ?? -1
            let ready = (try? systemCall("epoll_wait") { epoll_wait(epollDescriptor, events, CInt(capacity), wait) })
            for index in 0..<Int(ready ?? 0) {
                let token = events[index].data.u64
                if token == Self.wakeToken {
                    var bytes: (UInt64, UInt64) = (0, 0)
                    while read(wakeup.readDescriptor, &bytes, MemoryLayout.size(ofValue: bytes)) > 0 {}
                    continue
                }
                finish(CInt(truncatingIfNeeded: token), timedOut: false)
            }
            let late = ContinuousClock.now
            let expired = pending.withLock { $0.filter { $0.value.deadline <= late }.map(\.key) }
            for fd in expired { finish(fd, timedOut: true) }
        }
    }

    /// Ends the watch of `fd`: connected, failed with its `SO_ERROR`, or timed out.
    private func finish(_ fd: CInt, timedOut: Bool) {
        guard let entry = pending.withLock({ $0.removeValue(forKey: fd) }) else { return }
        _ = epoll_ctl(epollDescriptor, EPOLL_CTL_DEL, fd, nil)
        var error: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { error = errno }
        if error == 0, timedOut { error = ETIMEDOUT }
        guard error == 0 else {
            entry.socket.close()
            return entry.completion(.failure(SystemCallError(call: "connect", errno: error, context: "tcp upstream")))
        }
        entry.completion(.success(entry.socket))
    }
    #endif
}
