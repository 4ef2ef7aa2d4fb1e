import CUDPD
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
            guard let entry = getpwnam(user) else { throw PrivilegeError("unknown user '\(user)'") }
            uid = UInt32(entry.pointee.pw_uid)
            gid = UInt32(entry.pointee.pw_gid)
        }
        if let group {
            guard let entry = getgrnam(group) else { throw PrivilegeError("unknown group '\(group)'") }
            gid = UInt32(entry.pointee.gr_gid)
        }
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
/// can still bind ports below 1024; every other thread has no capability at all.
///
/// Linux keeps capabilities per thread: glibc applies setresuid to every thread, and each thread that did not ask
/// to keep its capabilities (PR_SET_KEEPCAPS, a per-thread flag) loses them all. So the drop runs on this thread,
/// which asks to keep them, then narrows its own sets to CAP_NET_BIND_SERVICE; binds run here afterwards.
///
/// `Sendable`: the job slot is behind a mutex and the pipes are only read and written with system calls.
public final class PrivilegedBinder: Sendable {
    private let requests: (read: CInt, write: CInt)
    private let done: (read: CInt, write: CInt)
    private let job = Mutex<(@Sendable () -> Void)?>(nil)
    private let callers = Mutex(())

    private init(requests: (CInt, CInt), done: (CInt, CInt)) {
        self.requests = requests
        self.done = done
    }

    /// Drops the whole process to `target`: supplementary groups, gid, uid (real, effective and saved), keeping
    /// only CAP_NET_BIND_SERVICE on the binder thread, and the capabilities of the mask `alsoKeeping` (first word)
    /// there too. Throws, with the process unchanged or partly changed, when any step fails; the caller must then
    /// exit.
    public static func drop(
        to target: PrivilegeTarget,
        alsoKeeping: UInt32 = 0
    ) throws(PrivilegeError) -> PrivilegedBinder {
        let requests = try pipePair()
        let done = try pipePair()
        let binder = PrivilegedBinder(requests: requests, done: done)
        let outcome = Mutex<PrivilegeError?>(nil)
        do {
            _ = try WorkerThread(name: "udpd-binder") {
                outcome.withLock { $0 = Self.dropOnThisThread(to: target, alsoKeeping: alsoKeeping) }
                binder.signal(binder.done.write)
                binder.serve()
            }
        } catch {
            throw PrivilegeError("cannot start the binder thread: \(error)")
        }
        binder.wait(binder.done.read)
        if let error = outcome.withLock({ $0 }) { throw error }
        return binder
    }

    /// Runs `body` on the binder thread (the only one allowed to bind ports below 1024) and returns its result.
    public func run<Result: Sendable, Failure: Error>(
        _ body: @escaping @Sendable () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let result = Mutex<Swift.Result<Result, Failure>?>(nil)
        callers.withLock { _ in
            job.withLock { $0 = { result.withLock { $0 = Swift.Result(catching: body) } } }
            signal(requests.write)
            wait(done.read)
        }
        return try result.withLock { $0! }.get()
    }

    private func serve() {
        while true {
            wait(requests.read)
            let next = job.withLock { job in
                defer { job = nil }
                return job
            }
            next?()
            signal(done.write)
        }
    }

    private static func dropOnThisThread(to target: PrivilegeTarget, alsoKeeping: UInt32) -> PrivilegeError? {
        let bind = UInt32(1) << UInt32(cudpd_cap_net_bind_service) | alsoKeeping
        do {
            if target.uid != nil {
                _ = try systemCall("prctl(PR_SET_KEEPCAPS)") { cudpd_prctl_keepcaps(1) }
            }
            var groups = [gid_t(target.gid)]
            _ = try systemCall("setgroups") { setgroups(1, &groups) }
            _ = try systemCall("setresgid") { cudpd_setresgid(gid_t(target.gid)) }
            if let uid = target.uid {
                _ = try systemCall("setresuid") { cudpd_setresuid(uid_t(uid)) }
                _ = try systemCall("capset") { cudpd_capset(bind, bind, 0) }
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

    private static func pipePair() throws(PrivilegeError) -> (CInt, CInt) {
        var fds: [CInt] = [0, 0]
        guard pipe(&fds) == 0 else { throw PrivilegeError("cannot create a pipe: errno \(errno)") }
        // Programs udpd starts must not inherit them.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }

    private func signal(_ fd: CInt) {
        var byte: UInt8 = 1
        _ = try? systemCall("write") { write(fd, &byte, 1) }
    }

    private func wait(_ fd: CInt) {
        var byte: UInt8 = 0
        _ = try? systemCall("read") { read(fd, &byte, 1) }
    }
}
