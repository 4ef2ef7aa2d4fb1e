import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Starts a program without a shell, inetd style: in its own process group, with default signal dispositions and
/// an empty signal mask, and with exactly three descriptors.
enum ChildSpawn {
    /// Spawns `argv` with `environment` (`NAME=value` strings); `stdin`, `stdout` and `stderr` become its
    /// descriptors 0, 1 and 2. Everything else is closed in the child: udpd opens every descriptor close-on-exec,
    /// and where the C library can, the file actions close every descriptor from 3 up as well.
    ///
    /// With an `identity` other than udpd's own, the child changes its groups, gid and uid before exec (which
    /// posix_spawn cannot do): that path forks in C and runs only system calls until execve.
    ///
    /// - Returns: the child's process id, which is also its process group id.
    static func spawn(
        argv: [String],
        environment: [String],
        stdin: CInt,
        stdout: CInt,
        stderr: CInt,
        identity: ProcessIdentity? = nil
    ) throws(SystemCallError) -> pid_t {
        if let identity, identity.uid != UInt32(geteuid()) || identity.gid != UInt32(getegid()) {
            return try spawn(
                argv: argv,
                environment: environment,
                stdin: stdin,
                stdout: stdout,
                stderr: stderr,
                as: identity
            )
        }
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        for (source, target) in [(stdin, CInt(0)), (stdout, CInt(1)), (stderr, CInt(2))] {
            posix_spawn_file_actions_adddup2(&actions, source, target)
        }
        _ = cudpd_spawn_file_actions_addclosefrom(&actions, 3)

        var signals = sigset_t()
        sigemptyset(&signals)
        posix_spawnattr_setsigmask(&attributes, &signals)
        // udpd ignores SIGPIPE; an ignored signal stays ignored across exec unless reset here.
        sigfillset(&signals)
        posix_spawnattr_setsigdefault(&attributes, &signals)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, cudpd_spawn_setpgroup | cudpd_spawn_setsigmask | cudpd_spawn_setsigdef)

        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        var pid = pid_t()
        let result = posix_spawn(&pid, argv[0], &actions, &attributes, cArguments, cEnvironment)
        guard result == 0 else { throw SystemCallError(call: "posix_spawn", errno: result, context: argv[0]) }
        return pid
    }

    private static func spawn(
        argv: [String],
        environment: [String],
        stdin: CInt,
        stdout: CInt,
        stderr: CInt,
        as identity: ProcessIdentity
    ) throws(SystemCallError) -> pid_t {
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in cArguments { free(pointer) }
            for pointer in cEnvironment { free(pointer) }
        }
        return try systemCall("fork+execve", context: "\(argv[0]) as \(identity)") {
            cudpd_spawn_as(
                argv[0],
                cArguments,
                cEnvironment,
                stdin,
                stdout,
                stderr,
                uid_t(identity.uid),
                gid_t(identity.gid)
            )
        }
    }
}
