import CUDPD
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The user and group udpd drops to after binding (`user:` and `group:` at the top of the configuration).
public struct PrivilegeTarget: Sendable, Equatable, CustomStringConvertible {
    /// The user's name as configured.
    public var user: String?
    /// The uid to run as; `nil` keeps the current one.
    public var uid: UInt32?
    /// The gid to run as (the group's, else the user's primary group).
    public var gid: UInt32

    public var description: String {
        "uid \(uid.map(String.init) ?? "unchanged") gid \(gid)"
    }

    /// Looks up `user` and `group` in the user and group databases.
    public static func resolve(user: String?, group: String?) throws(PrivilegeError) -> PrivilegeTarget {
        var uid: UInt32?
        var gid = UInt32(getegid())
        if let user {
            let entry = try AccountDatabase.user(user)
            uid = entry.uid
            gid = entry.gid
        }
        if let group { gid = try AccountDatabase.group(group) }
        return PrivilegeTarget(user: user, uid: uid, gid: gid)
    }
}

/// Why privileges could not be dropped; udpd refuses to run on rather than run as root by mistake.
public struct PrivilegeError: Error, Sendable, CustomStringConvertible {
    /// What failed.
    public var description: String

    /// Creates an error.
    public init(_ description: String) {
        self.description = description
    }
}

/// The one thread that keeps `CAP_NET_BIND_SERVICE` after udpd dropped to an unprivileged user, so that a reload
/// can still bind ports below 1024 (and CAP_NET_RAW when a transparent forward needs it, to make its sockets);
/// every other thread has no capability at all.
///
/// Linux keeps capabilities per thread: glibc applies setresuid to every thread, and each thread that did not ask
/// to keep its capabilities (PR_SET_KEEPCAPS, a per-thread flag) loses them all. So the drop runs on this thread,
/// which asks to keep them, then narrows its own sets to CAP_NET_BIND_SERVICE; binds run here afterwards.
///
/// Callers never block: a job joins a queue (a mutex held only to append or take), one byte on a non-blocking pipe
/// wakes the thread, and the caller awaits a continuation that the thread resumes with the job's result. Only the
/// binder thread itself waits on the pipe, holding nothing.
///
/// `Sendable`: the job queue is behind a mutex and the pipe is only read and written with system calls.
public final class PrivilegedBinder: Sendable {
    private let wakeup: (read: CInt, write: CInt)
    private let jobs = Mutex<[@Sendable () -> Void]>([])

    private init(wakeup: (CInt, CInt)) {
        self.wakeup = wakeup
    }

    /// Drops the whole process to `target`: supplementary groups, gid, uid (real, effective and saved), keeping
    /// only CAP_NET_BIND_SERVICE on the binder thread. (Programs are started by the program spawner, a process of
    /// its own forked before the drop; see ``ProgramSpawner``.) With `keepingNetRaw`, the binder thread also keeps
    /// CAP_NET_RAW, which making transparent sockets takes (see ``TransparentSockets``). Throws, with the process
    /// unchanged or partly changed, when any step fails; the caller must then exit.
    public static func drop(to target: PrivilegeTarget, keepingNetRaw: Bool = false) async throws(PrivilegeError)
        -> PrivilegedBinder
    {
        let binder = PrivilegedBinder(wakeup: try pipePair())
        let failure: PrivilegeError? = await withCheckedContinuation { continuation in
            do {
                _ = try WorkerThread(name: "udpd-binder") {
                    let failure = Self.dropOnThisThread(to: target, keepingNetRaw: keepingNetRaw)
                    continuation.resume(returning: failure)
                    if failure == nil { binder.serve() }
                }
            } catch {
                continuation.resume(returning: PrivilegeError("cannot start the binder thread: \(error)"))
            }
        }
        if let failure { throw failure }
        return binder
    }

    /// Runs `body` on the binder thread (the only one allowed to bind ports below 1024) and returns its result,
    /// suspending the caller (never blocking its thread) meanwhile.
    public func run<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
        await withCheckedContinuation { continuation in
            jobs.withLock { $0.append { continuation.resume(returning: body()) } }
            wake()
        }
    }

    /// Queues `job` for the binder thread without waiting for it (topping up a stock of sockets).
    public func submit(_ job: @escaping @Sendable () -> Void) {
        jobs.withLock { $0.append(job) }
        wake()
    }

    /// The binder thread's loop: waits for a wake-up, then runs every queued job in order.
    private func serve() {
        var bytes = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        while true {
            _ = try? systemCall("read") { read(wakeup.read, &bytes, MemoryLayout.size(ofValue: bytes)) }
            let queued = jobs.withLock { queued in
                defer { queued = [] }
                return queued
            }
            for job in queued { job() }
        }
    }

    private static func dropOnThisThread(to target: PrivilegeTarget, keepingNetRaw: Bool) -> PrivilegeError? {
        var kept = UInt32(1) << UInt32(cudpd_cap_net_bind_service)
        if keepingNetRaw { kept |= UInt32(1) << UInt32(cudpd_cap_net_raw) }
        do {
            if target.uid != nil {
                _ = try systemCall("prctl(PR_SET_KEEPCAPS)") { cudpd_prctl_keepcaps(1) }
            }
            var groups = [gid_t(target.gid)]
            _ = try systemCall("setgroups") { setgroups(1, &groups) }
            _ = try systemCall("setresgid") { cudpd_setresgid(gid_t(target.gid)) }
            if let uid = target.uid {
                _ = try systemCall("setresuid") { cudpd_setresuid(uid_t(uid)) }
                _ = try systemCall("capset") { cudpd_capset(kept, kept, 0) }
                _ = try systemCall("prctl(PR_SET_KEEPCAPS)") { cudpd_prctl_keepcaps(0) }
            }
        } catch {
            return PrivilegeError("cannot drop privileges to \(target): \(error)")
        }
        if let uid = target.uid, getuid() != uid || geteuid() != uid {
            return PrivilegeError("still running as uid \(geteuid()) after dropping to \(uid)")
        }
        return nil
    }

    /// A pipe whose write end never blocks: a full pipe (64 KiB of wake-ups the thread has not read yet) already
    /// guarantees that the thread will wake and take the job.
    private static func pipePair() throws(PrivilegeError) -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        guard pipe(&fds) == 0 else { throw PrivilegeError("cannot create a pipe: errno \(errno)") }
        // Programs udpd starts must not inherit them.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        _ = fcntl(fds[1], F_SETFL, fcntl(fds[1], F_GETFL) | O_NONBLOCK)
        return (fds[0], fds[1])
    }

    private func wake() {
        var byte: UInt8 = 1
        _ = try? nonBlockingSystemCall("write") { write(wakeup.write, &byte, 1) }
    }
}
