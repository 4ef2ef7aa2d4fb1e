import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What the program spawner is asked for: start a program under a guard (see `cudpd_guard_run` in
/// `Sources/CUDPD/guard.c`): its own process group, default signal dispositions, an empty signal mask, exactly
/// three descriptors, its own user, no capability, no_new_privs; and a guard process, a child subreaper, that
/// reaps everything the program starts and kills all of it at the timeout or when udpd goes away.
enum ChildSpawn {
    /// /proc/sys/kernel/cap_last_cap, read once (before any fork: the child may not read files it does not need).
    static let lastCapability: CInt = {
        let fallback: CInt = 63
        guard let fd = try? systemCall("open", { open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC) })
        else { return fallback }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 16)
        let count = (try? systemCall("read") { read(fd, &bytes, bytes.count) }) ?? 0
        let text = String(decoding: bytes.prefix(max(0, count)), as: UTF8.self)
        return CInt(text.filter(\.isNumber)) ?? fallback
    }()

    /// The spawner's message that starts `argv` with `environment` (`NAME=value` strings). With an `identity`, the
    /// program runs as that uid and gid (its gid the only supplementary group); without one, as udpd's user now
    /// (which is not the spawner's once udpd dropped to its `user:`). Everything the program starts is killed at
    /// `timeout`. The message travels with the program's three descriptors and the guard's end of its control
    /// socket (see ``ProgramSpawner``), to a spawner running as `spawnerUser`.
    ///
    /// Throws E2BIG when the command line and environment exceed what the spawner takes.
    static func request(
        argv: [String],
        environment: [String],
        identity: ProcessIdentity?,
        timeout: Duration,
        spawnerUser: ProcessIdentity
    ) throws(SystemCallError) -> [UInt8] {
        let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        let target = identity ?? ProcessIdentity(uid: UInt32(geteuid()), gid: UInt32(getegid()))
        // The spawner's own uid and gid need no change (and an unprivileged one could not even set its groups);
        // root sets the groups even for root.
        let changesIdentity = target != spawnerUser || spawnerUser.uid == 0
        var head = cudpd_spawn_request(
            kind: 1,
            guard_process: 0,
            change_identity: changesIdentity ? 1 : 0,
            uid: target.uid,
            gid: target.gid,
            last_capability: lastCapability,
            argc: Int32(clamping: argv.count),
            envc: Int32(clamping: environment.count),
            timeout_ms: Int64(clamping: max(1, milliseconds))
        )
        var message = withUnsafeBytes(of: &head) { [UInt8]($0) }
        for string in argv + environment {
            message += string.utf8
            message.append(0)
        }
        guard message.count <= cudpd_spawn_request_max else {
            throw SystemCallError(
                call: "sendmsg",
                errno: E2BIG,
                context: "\(argv[0]): \(message.count) bytes of arguments and environment for the program spawner"
            )
        }
        return message
    }

    /// The spawner's message that kills guard `guardProcess` (past its program's timeout and grace, unheard of);
    /// the spawner then kills what is left of its tree and reports in its place.
    static func killRequest(guardProcess: pid_t) -> [UInt8] {
        var head = cudpd_spawn_request()
        head.kind = 2
        head.guard_process = guardProcess
        return withUnsafeBytes(of: &head) { [UInt8]($0) }
    }
}
