import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A program started under its guard: the guard's pid and udpd's end of the guard's control socket.
struct GuardedProgram: Sendable {
    /// The guard's process id (the program is its child; udpd never sees the program's pid).
    var guardProcess: pid_t
    /// A byte written here makes the guard kill the program's tree now; closing it (udpd's exit, even by SIGKILL)
    /// does too. The guard's one report arrives here when the tree is gone.
    var control: CInt
}

/// Starts a program without a shell, inetd style, under a guard (see `cudpd_spawn_guarded` in
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

    /// Spawns `argv` with `environment` (`NAME=value` strings); `stdin`, `stdout` and `stderr` become its
    /// descriptors 0, 1 and 2. With an `identity`, the program runs as that uid and gid (its gid the only
    /// supplementary group); without one, as udpd's own user. Everything the program starts is killed at
    /// `timeout`.
    ///
    /// Returns once the program has been exec'd, or throws the errno of the step that failed (nothing is left
    /// running then).
    static func spawn(
        argv: [String],
        environment: [String],
        stdin: CInt,
        stdout: CInt,
        stderr: CInt,
        identity: ProcessIdentity?,
        timeout: Duration
    ) throws(SystemCallError) -> GuardedProgram {
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        let milliseconds = timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000
        var control: CInt = -1
        // udpd's own uid and gid need no change (and an unprivileged udpd could not even set its groups).
        let changesIdentity = identity.map { $0.uid != geteuid() || $0.gid != getegid() || geteuid() == 0 } ?? false
        // The closures below cannot throw a typed error: they hand back the pid, or -1 and errno.
        let (guardProcess, error) = argv[0].withCString { path in
            cArguments.withUnsafeBufferPointer { arguments in
                cEnvironment.withUnsafeBufferPointer { environment in
                    var program = cudpd_program(
                        path: path,
                        argv: arguments.baseAddress!,
                        envp: environment.baseAddress!,
                        change_identity: changesIdentity ? 1 : 0,
                        uid: uid_t(identity?.uid ?? 0),
                        gid: gid_t(identity?.gid ?? 0),
                        last_capability: lastCapability,
                        timeout_ms: Int(clamping: max(1, milliseconds))
                    )
                    let pid = cudpd_spawn_guarded(&program, stdin, stdout, stderr, &control)
                    return (pid, pid < 0 ? errno : 0)
                }
            }
        }
        guard guardProcess > 0 else {
            throw SystemCallError(
                call: "fork+execve",
                errno: error,
                context: "\(argv[0]) as \(identity?.description ?? "udpd's user")"
            )
        }
        return GuardedProgram(guardProcess: guardProcess, control: control)
    }
}
