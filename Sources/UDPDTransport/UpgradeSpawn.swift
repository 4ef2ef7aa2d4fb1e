import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One descriptor handed to the new udpd of an upgrade, with the name `LISTEN_FDNAMES` gives it.
///
/// `Sendable`: a name and a descriptor number.
public struct HandedOverDescriptor: Sendable {
    /// Its `LISTEN_FDNAMES` name (see ``SocketActivation/descriptorName(proto:endpoint:device:)``).
    public var name: String
    /// The descriptor in this process; it stays this process's (the new udpd gets its own copy).
    public var descriptor: CInt

    /// Creates an entry.
    public init(name: String, descriptor: CInt) {
        self.name = name
        self.descriptor = descriptor
    }
}

/// Why the new udpd of an upgrade did not take over; the old one never stopped serving.
public struct UpgradeFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The reason, for `udpctl upgrade` and the log.
    public var description: String

    /// Creates a failure.
    public init(_ description: String) {
        self.description = description
    }
}

/// Starts the new udpd of an upgrade and waits until it serves.
///
/// The new process is started with posix_spawn (no fork of a multi-threaded daemon, and nothing runs in the child
/// but the exec): the handed-over descriptors become its descriptors 3, 4, ... (announced by `LISTEN_FDS` and
/// `LISTEN_FDNAMES`, as systemd announces sockets, so that one adoption path serves socket activation, upgrades
/// and the descriptor store), the readiness pipe's write end comes last (`upgrade-ready`), and every other
/// descriptor above 2 is closed in the child; signal dispositions are reset and the signal mask is empty.
public enum UpgradeSpawn {
    /// Starts `executable` with `arguments` and waits up to `deadline` for its `ready PID` line. Blocks: call it off
    /// the supervisor and off the cooperative pool.
    ///
    /// On any failure the new process, if still there, is killed and reaped, and the reason is returned: its exit
    /// status, the error lines it wrote on the readiness pipe before exiting, or the deadline.
    public static func start(
        executable: String,
        arguments: [String],
        descriptors: [HandedOverDescriptor],
        environment: [String: String],
        deadline: Duration
    ) -> Result<pid_t, UpgradeFailure> {
        var pipeEnds: [CInt] = [-1, -1]
        do {
            try systemCall("pipe2", context: "upgrade readiness") { cudpd_pipe_cloexec_nonblock(&pipeEnds) }
            // The read end waits in poll; a read after poll said so must not fail with EAGAIN.
            try systemCall("fcntl", context: "upgrade readiness") { fcntl(pipeEnds[0], F_SETFL, 0) }
        } catch {
            return .failure(UpgradeFailure("cannot create the readiness pipe: \(error)"))
        }
        let (readEnd, writeEnd) = (pipeEnds[0], pipeEnds[1])
        defer { close(readEnd) }
        let handed = descriptors + [HandedOverDescriptor(name: SocketActivation.readinessName, descriptor: writeEnd)]
        var variables = environment
        variables["LISTEN_PID"] = nil
        variables["LISTEN_FDS"] = "\(handed.count)"
        variables["LISTEN_FDNAMES"] = handed.map(\.name).joined(separator: ":")
        variables[SocketActivation.upgradeVariable] = "\(getpid())"
        let spawned = spawn(executable, arguments: arguments, descriptors: handed.map(\.descriptor), variables)
        close(writeEnd)
        switch spawned {
        case .failure(let error):
            return .failure(UpgradeFailure("cannot start \(executable): \(error)"))
        case .success(let pid):
            return awaitReadiness(of: pid, on: readEnd, deadline: deadline)
        }
    }

    /// posix_spawn with `descriptors` at 3, 4, ...: each is first copied above the target range (close-on-exec),
    /// then dup2'ed into place in the child, which clears close-on-exec on the copy; everything above is closed.
    private static func spawn(
        _ executable: String,
        arguments: [String],
        descriptors: [CInt],
        _ variables: [String: String]
    ) -> Result<pid_t, SystemCallError> {
        let first = SocketActivation.firstDescriptor
        let above = first + CInt(descriptors.count)
        var copies: [CInt] = []
        defer { copies.forEach { close($0) } }
        do {
            for descriptor in descriptors {
                copies.append(
                    try systemCall("fcntl", context: "F_DUPFD_CLOEXEC fd \(descriptor)") {
                        fcntl(descriptor, F_DUPFD_CLOEXEC, above)
                    }
                )
            }
        } catch {
            return .failure(error)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (index, copy) in copies.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, copy, first + CInt(index))
        }
        closeFrom(above, in: &actions)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var everySignal = sigset_t()
        var noSignal = sigset_t()
        sigfillset(&everySignal)
        sigemptyset(&noSignal)
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        posix_spawnattr_setsigmask(&attributes, &noSignal)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = variables.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard result == 0 else {
            return .failure(SystemCallError(call: "posix_spawn", errno: result, context: executable))
        }
        return .success(pid)
    }

    /// `posix_spawn_file_actions_addclosefrom_np` (glibc 2.34 and later; looked up, as Swift's Glibc module does
    /// not declare GNU extensions). Where it is missing, every descriptor of this process above `low` is marked
    /// close-on-exec instead (udpd opens all of its own so; this covers the rest).
    private static func closeFrom(_ low: CInt, in actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, CInt) -> CInt
        if let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") {
            let closeFrom = unsafeBitCast(symbol, to: CloseFrom.self)
            if closeFrom(&actions, low) == 0 { return }
        }
        guard let directory = opendir("/proc/self/fd") else { return }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = CInt(name), fd >= low { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        }
    }

    /// Reads the readiness pipe until `ready PID`, end of file, or the deadline; a process that did not get ready is
    /// killed (if still there) and reaped before this returns.
    private static func awaitReadiness(
        of pid: pid_t,
        on pipe: CInt,
        deadline: Duration
    ) -> Result<pid_t, UpgradeFailure> {
        let clock = ContinuousClock()
        let end = clock.now + deadline
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while text.count < 65_536 {
            let left = clock.now.duration(to: end)
            guard left > .zero else {
                killAndReap(pid)
                return .failure(UpgradeFailure("the new udpd (pid \(pid)) did not serve within \(deadline); killed it"))
            }
            var poller = pollfd(fd: pipe, events: Int16(POLLIN), revents: 0)
            let milliseconds = CInt(
                clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1
            )
            let ready = (try? systemCall("poll", context: "upgrade readiness") { poll(&poller, 1, milliseconds) }) ?? 0
            guard ready > 0 else { continue }
            let count =
                (try? systemCall("read", context: "upgrade readiness") { read(pipe, &buffer, buffer.count) }) ?? 0
            if count <= 0 { break }
            text += buffer.prefix(count)
            let lines = String(decoding: text, as: UTF8.self).split(separator: "\n")
            if let line = lines.first(where: { $0.hasPrefix("ready ") }), let ready = pid_t(line.dropFirst(6)) {
                return .success(ready)
            }
        }
        let errors = String(decoding: text, as: UTF8.self).split(separator: "\n").joined(separator: "; ")
        let ended = exitStatus(of: pid)
        if ended == nil { killAndReap(pid) }
        let exit = ended.map { ", \($0)" } ?? ""
        return .failure(
            UpgradeFailure(
                "the new udpd (pid \(pid)\(exit)) stopped before serving" + (errors.isEmpty ? "" : ": \(errors)")
            )
        )
    }

    /// How the child ended, if it did within a moment (it closed the pipe, so it is exiting): `exit status 1`.
    private static func exitStatus(of pid: pid_t) -> String? {
        for _ in 0..<100 {
            var status: CInt = 0
            if let reaped = try? systemCall("waitpid", { waitpid(pid, &status, WNOHANG) }), reaped == pid {
                let signal = status & 0x7f
                return signal == 0 ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(signal)"
            }
            usleep(10_000)
        }
        return nil
    }

    /// Kills the new process (it failed) and reaps it; nothing if it is already gone.
    private static func killAndReap(_ pid: pid_t) {
        guard kill(pid, SIGKILL) == 0 else { return }
        var status: CInt = 0
        _ = try? systemCall("waitpid", { waitpid(pid, &status, 0) })
    }
}
