import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// udpd's side of the program spawner (`cudpd_spawner_start` in `Sources/CUDPD/spawner.c`): a small process forked
/// once, while udpd is small, that forks each program's guard, so that starting a program costs the same however
/// many connections and how much memory udpd holds. When udpd starts as root it is the one part of udpd that keeps
/// the capabilities to start programs as their own user; udpd itself drops them.
///
/// Lives on the exec runner's thread only (PR_SET_PDEATHSIG ties the spawner to the thread that forked it). Never
/// blocks: requests go out on a non-blocking socket, and wait in order in an outbox while it is full.
struct ProgramSpawner {
    /// The spawner's pid.
    let process: pid_t
    /// udpd's end of its socket (SOCK_SEQPACKET).
    let socket: CInt
    /// Whom it runs as: udpd's user when it was forked.
    let user: ProcessIdentity
    /// Requests not sent yet, with the descriptors they carry (the runner's copies, closed once sent).
    private var outbox: [(message: [UInt8], descriptors: [CInt])] = []

    private init(process: pid_t, socket: CInt, user: ProcessIdentity) {
        self.process = process
        self.socket = socket
        self.user = user
    }

    /// Forks the spawner from the calling thread, which must live as long as udpd.
    static func start() throws(SystemCallError) -> ProgramSpawner {
        var socket: CInt = -1
        let user = ProcessIdentity(uid: UInt32(geteuid()), gid: UInt32(getegid()))
        let process = try systemCall("fork", context: "the program spawner") {
            cudpd_spawner_start(ChildSpawn.lastCapability, &socket)
        }
        return ProgramSpawner(process: process, socket: socket, user: user)
    }

    /// Whether requests wait for room on the socket.
    var hasQueuedRequests: Bool { !outbox.isEmpty }

    /// Sends `message` with `descriptors` (the program's 0, 1, 2 and the guard's end of its control socket; one may
    /// appear twice), now or once the socket has room. Owns `descriptors` from now on: closes them once they are
    /// sent, or when the spawner is gone.
    mutating func send(_ message: [UInt8], passing descriptors: [CInt]) {
        outbox.append((message, descriptors))
        flush()
    }

    /// Sends what waits, in order, until the socket is full. A request the spawner cannot take (it is gone) is
    /// dropped: closing its descriptors closes the guard's end of its control socket, which the runner reads as a
    /// program that could not start.
    mutating func flush() {
        while let (message, descriptors) = outbox.first {
            let fd = socket
            let sent: Int?
            do {
                sent = try message.withUnsafeBytes { (bytes) throws(SystemCallError) -> Int? in
                    try descriptors.withUnsafeBufferPointer { (fds) throws(SystemCallError) -> Int? in
                        try nonBlockingSystemCall("sendmsg", context: "the program spawner") {
                            cudpd_spawner_send(fd, bytes.baseAddress!, bytes.count, fds.baseAddress, CInt(fds.count))
                        }
                    }
                }
            } catch {
                sent = -1
            }
            guard sent != nil else { return }  // full: POLLOUT brings the runner back
            outbox.removeFirst()
            for descriptor in Set(descriptors) { close(descriptor) }
        }
    }

    /// Asks the spawner to kill guard `guardProcess`, which ran past its program's timeout and grace unheard of.
    mutating func killGuard(_ guardProcess: pid_t) {
        send(ChildSpawn.killRequest(guardProcess: guardProcess), passing: [])
    }

    /// Whether the spawner is gone: its socket hung up, or it exited (and is reaped now).
    mutating func hasExited(socketEvents: Int16) -> Bool {
        if socketEvents & Int16(POLLHUP | POLLERR | POLLIN) != 0 { return true }
        var status: CInt = 0
        let pid = process
        guard (try? systemCall("waitpid") { waitpid(pid, &status, WNOHANG) }) == pid else { return false }
        endStatus = status
        return true
    }

    /// Its wait status, once reaped by ``hasExited(socketEvents:)``.
    private(set) var endStatus: CInt?

    /// Forgets a spawner that is gone: closes the socket and every descriptor still waiting in the outbox (their
    /// guards' control sockets then read as programs that could not start), and reaps it (a spawner whose socket
    /// hung up is exiting; waited for 100 ms at most, and killed where udpd may).
    /// Returns how it ended (its wait status), when it could be reaped.
    @discardableResult
    mutating func abandon() -> CInt? {
        for (_, descriptors) in outbox {
            for descriptor in Set(descriptors) { close(descriptor) }
        }
        outbox = []
        close(socket)
        let pid = process
        _ = kill(pid, SIGKILL)
        for _ in 0..<100 {
            var status: CInt = 0
            let reaped = try? systemCall("waitpid") { waitpid(pid, &status, WNOHANG) }
            if reaped == pid { return status }
            if reaped != 0 { return nil }  // reaped already (by hasExited), or not udpd's child
            usleep(1000)
        }
        return nil
    }
}
