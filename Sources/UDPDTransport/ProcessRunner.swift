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

/// One program for the ``ProcessRunner`` to run.
public struct ProcessRequest: Sendable {
    /// What the program reads and writes.
    public enum Input: Sendable {
        /// A datagram: these bytes are its stdin (then end of file), and its stdout is collected up to
        /// `captureLimit` bytes.
        case bytes([UInt8], captureLimit: Int)
        /// A connection: this descriptor is its stdin and stdout. The runner owns it and closes its copy once the
        /// program has started.
        case socket(CInt)
    }

    /// The program and its arguments; `argv[0]` is an absolute path.
    public var argv: [String]
    /// The environment, as `NAME=value`.
    public var environment: [String]
    /// What the program reads and writes.
    public var input: Input
    /// How long the program, and everything it starts, may run before all of it is killed.
    public var timeout: Duration
    /// Whom the program runs as; `nil` for udpd's own user (see ``ProcessIdentity/effective(explicit:)``).
    public var identity: ProcessIdentity?
    /// Called on the runner's thread with each line the program writes to stderr.
    public var onStandardError: @Sendable (String) -> Void
    /// Called on the runner's thread once the program has exited and been reaped (or could not start).
    public var onExit: @Sendable (ProcessOutcome) -> Void

    /// Creates a request.
    public init(
        argv: [String],
        environment: [String],
        input: Input,
        timeout: Duration,
        identity: ProcessIdentity? = nil,
        onStandardError: @escaping @Sendable (String) -> Void,
        onExit: @escaping @Sendable (ProcessOutcome) -> Void
    ) {
        self.argv = argv
        self.environment = environment
        self.input = input
        self.timeout = timeout
        self.identity = identity
        self.onStandardError = onStandardError
        self.onExit = onExit
    }
}

/// How a program ended.
public struct ProcessOutcome: Sendable {
    /// What it wrote to stdout, up to the capture limit (datagram requests only).
    public var standardOutput: [UInt8]
    /// The program's wait status; `nil` when it could not be started (or its guard was lost before reaping it).
    public var waitStatus: CInt?
    /// Whether the program itself ran past its timeout and was killed.
    public var timedOut: Bool
    /// Why it could not be started, if it could not.
    public var spawnError: SystemCallError?
    /// How many processes of the program's tree were killed: the program at its timeout, and whatever it left
    /// running (background or `setsid` children) at the timeout or at udpd's shutdown.
    public var killed: Int = 0

    /// The signal that ended a process with wait status `status`, or `nil` when it exited (WIFSIGNALED and
    /// WTERMSIG are macros Swift cannot import).
    public static func terminatingSignal(_ status: CInt) -> CInt? {
        let signal = status & 0x7f
        return signal != 0 && signal != 0x7f ? signal : nil
    }
}

/// Runs the programs of every exec service on one dedicated thread: it has the program spawner (see
/// ``ProgramSpawner``) start each under its own guard process (see ``ChildSpawn``), feeds their stdin, collects
/// their stdout and stderr, and reads each guard's reports, the last once the program's whole tree is gone (the
/// guard kills it at the timeout).
///
/// The spawner, a child subreaper, kills and counts the tree of a guard lost by accident. udpd is a child subreaper
/// too, for what a lost spawner leaves. A spawner that dies is counted (``spawnersLost``) and started again (at
/// most once a second) by the next request; the requests it took with it fail, counted by their service.
///
/// One runner serves the whole process, so rebuilding handlers on reload creates no threads.
/// `Sendable`: requests reach the thread through a mutex-protected queue and a wakeup pipe; everything else lives
/// on the thread.
public final class ProcessRunner: Sendable {
    /// The process-wide runner, once started.
    private static let instance = Mutex<ProcessRunner?>(nil)

    /// The process-wide runner, started on first use. Starting it takes a wakeup pipe and a thread: when they
    /// cannot be had (out of descriptors) this throws, and the next call tries again. Exec services start it when
    /// they are set up, so that a shortage later costs only the requests that meet it.
    public static func shared() throws(SystemCallError) -> ProcessRunner {
        try instance.withLock { (runner) throws(SystemCallError) -> ProcessRunner in
            if let runner { return runner }
            let started = try ProcessRunner()
            runner = started
            Self.started.store(true, ordering: .releasing)
            return started
        }
    }

    /// Runs `request` on the process-wide runner; when the runner cannot be started its `onExit` reports why at
    /// once, on the calling thread (and its connection, if any, is closed).
    public static func run(_ request: ProcessRequest) {
        do {
            try shared().run(request)
        } catch {
            if case .socket(let fd) = request.input { close(fd) }
            request.onExit(ProcessOutcome(standardOutput: [], waitStatus: nil, timedOut: false, spawnError: error))
        }
    }

    /// What the program spawner keeps to start programs as their own user: CAP_SETUID, CAP_SETGID (the switch),
    /// CAP_SETPCAP (to empty the program's bounding set) and CAP_KILL (for its guards to kill their trees).
    public static var capabilitiesToStartPrograms: UInt32 { cudpd_program_spawn_capabilities }

    private static let started = Atomic<Bool>(false)
    private static let droppedFromRoot = Atomic<Bool>(false)
    private static let lostSpawners = Atomic<Int>(0)

    /// How many program spawners died while udpd ran (each is replaced by the next request).
    public static var spawnersLost: Int { lostSpawners.load(ordering: .relaxed) }

    private static let spawnerLossLog = Mutex<(@Sendable (String) -> Void)?>(nil)

    /// Has `log` told, on the runner's thread, of every program spawner that dies (udpd's log, set once at start).
    public static func reportSpawnerLosses(to log: @escaping @Sendable (String) -> Void) {
        spawnerLossLog.withLock { $0 = log }
    }

    fileprivate static func noteSpawnerLost(_ description: String) {
        let count = lostSpawners.wrappingAdd(1, ordering: .relaxed).newValue
        spawnerLossLog.withLock { $0 }?("\(description) (\(count) lost so far); the next program starts a new one")
    }

    /// Records that udpd, started as root, dropped to its `user:`: programs still run as `nobody` unless their
    /// service names a user (the spawner, started before the drop, keeps what that takes).
    public static func noteDroppedFromRoot() {
        droppedFromRoot.store(true, ordering: .releasing)
    }

    /// Whether udpd was started as root: it runs as root still, or it dropped to its `user:`. Programs then run as
    /// `nobody` unless their service names a user.
    public static var startedAsRoot: Bool { geteuid() == 0 || droppedFromRoot.load(ordering: .acquiring) }

    private let queue = Mutex<[ProcessRequest]>([])
    private let wakeup: WakeupPipe
    /// Set at shutdown: when every program still running is to be killed.
    private let stopBy = Mutex<ContinuousClock.Instant?>(nil)
    /// Requests queued or running whose `onExit` has not been called yet.
    private let runningCount = Atomic<Int>(0)

    private init() throws(SystemCallError) {
        let wakeup = try WakeupPipe()
        self.wakeup = wakeup
        _ = try? systemCall("prctl(PR_SET_CHILD_SUBREAPER)") { cudpd_become_subreaper() }
        // The spawner is forked by the runner's thread (it dies with the thread that forked it, and this one lives
        // as long as udpd); the first runner is made while udpd is small and, started as root, still privileged.
        let spawnerStarted = DispatchSemaphore(value: 0)
        let thread = try WorkerThread(name: "udpd-exec") { [unowned self] in
            var loop = ProcessRunnerLoop(wakeup: wakeup)
            loop.startSpawner()
            spawnerStarted.signal()
            loop.run(
                take: {
                    self.queue.withLock { pending in
                        defer { pending = [] }
                        return pending
                    }
                },
                stopBy: { self.stopBy.withLock { $0 } },
                exited: { self.runningCount.wrappingSubtract(1, ordering: .releasing) }
            )
        }
        _ = thread  // runs as long as the process
        spawnerStarted.wait()  // one fork of a small process, once
    }

    /// Queues `request`; its `onExit` is always called exactly once.
    public func run(_ request: ProcessRequest) {
        runningCount.wrappingAdd(1, ordering: .relaxed)
        queue.withLock { $0.append(request) }
        wakeup.wake()
    }

    /// At udpd's shutdown: waits up to `grace` for the programs still running to finish, then has their guards
    /// kill what is left (counted like a timeout's leftovers) and waits, at most a few seconds more, for their
    /// reports. Blocks the calling thread (call it from the main thread, never from the cooperative pool).
    /// Returns at once when no program was ever started. Whatever is left when udpd exits dies with it: every
    /// guard kills its tree when its control socket closes.
    public static func finishRunningPrograms(grace: Duration) {
        guard started.load(ordering: .acquiring), let runner = instance.withLock({ $0 }) else { return }
        let clock = ContinuousClock()
        let killAt = clock.now + grace
        while runner.runningCount.load(ordering: .acquiring) > 0, clock.now < killAt {
            usleep(20_000)
        }
        runner.stopBy.withLock { $0 = clock.now }
        runner.wakeup.wake()
        let giveUp = clock.now + .seconds(3)
        while runner.runningCount.load(ordering: .acquiring) > 0, clock.now < giveUp {
            usleep(10_000)
        }
    }
}

/// A program the runner started and has not finished with.
private struct RunningChild {
    /// The guard's pid (0 until its first report).
    var pid: pid_t
    var request: ProcessRequest
    var deadline: ContinuousClock.Instant
    /// udpd's end of the guard's control socket.
    var control: CInt = -1
    /// Whether the guard reported (or was lost and its tree swept): the program's whole tree is gone.
    var finished = false
    var guardReaped = false
    var killed = 0
    var askedToStop = false
    /// The guard reported that the program started.
    var started = false
    /// Why the program could not start, when it could not.
    var spawnError: SystemCallError?
    /// The spawner was asked to kill the guard, silent past the program's timeout and grace.
    var killRequested = false
    /// The guard and the spawner are gone without a report; what the guard's tree left is udpd's to kill.
    var lost = false
    var standardInput: CInt = -1
    var pendingInput: [UInt8] = []
    var standardOutput: CInt = -1
    var collected: [UInt8] = []
    var captureLimit = 0
    var standardError: CInt = -1
    var errorLine: [UInt8] = []
    var waitStatus: CInt?
    var timedOut = false

    var pipesOpen: Bool { standardInput >= 0 || standardOutput >= 0 || standardError >= 0 }
    var done: Bool { finished && guardReaped && !lost && !pipesOpen }
}

/// The runner's loop; lives on its thread only.
private struct ProcessRunnerLoop {
    let wakeup: WakeupPipe
    var children: [RunningChild] = []
    let clock = ContinuousClock()
    /// The program spawner, while there is one.
    var spawner: ProgramSpawner?
    /// Why there is none (for the requests that meet its absence).
    var spawnerMissing = "not started"
    /// When a spawner may be started again.
    var spawnerRetry: ContinuousClock.Instant

    init(wakeup: WakeupPipe) {
        self.wakeup = wakeup
        self.spawnerRetry = clock.now
    }

    /// Forks a program spawner from this thread; on failure, the requests of the next second fail, saying why.
    mutating func startSpawner() {
        spawnerRetry = clock.now + .seconds(1)
        do {
            spawner = try ProgramSpawner.start()
        } catch {
            spawnerMissing = "\(error)"
        }
    }

    /// Notices a spawner that is gone (`events` from its socket): counts it and forgets it; the next request
    /// starts another. Its guards, now udpd's children, report as before.
    private mutating func checkSpawner(events: Int16) {
        guard var current = spawner else { return }
        if current.hasExited(socketEvents: events) {
            let reapedAlready = current.endStatus
            let status = current.abandon() ?? reapedAlready
            spawner = nil
            let how = status.map { ProcessOutcome.terminatingSignal($0).map { "killed by signal \($0)" } ?? "exited" }
            spawnerMissing = "the program spawner (pid \(current.process)) died"
            ProcessRunner.noteSpawnerLost("the program spawner (pid \(current.process)) \(how ?? "ended")")
            return
        }
        if events & Int16(POLLOUT) != 0 { current.flush() }
        spawner = current
    }

    mutating func run(
        take: () -> [ProcessRequest],
        stopBy: () -> ContinuousClock.Instant?,
        exited: () -> Void
    ) {
        while true {
            drainWakeup()
            let requests = take()
            for request in requests { start(request, exited: exited) }
            checkSpawner(events: pollOnce())
            let stopNow = stopBy().map { clock.now >= $0 } ?? false
            for index in children.indices {
                if stopNow { askToStop(&children[index]) }
                var child = children[index]
                service(&child)  // mutating: it may ask the spawner to kill a stuck guard
                children[index] = child
            }
            // Only once the lost guard is reaped has its tree reparented to udpd.
            for index in children.indices where children[index].lost && children[index].guardReaped {
                children[index].lost = false
                var known = Set(children.map(\.pid))
                if let spawner { known.insert(spawner.process) }
                children[index].killed = Self.killOrphans(except: children[index].pid, known: known)
            }
            children.removeAll { child in
                guard child.done else { return false }
                close(child.control)
                child.request.onExit(
                    ProcessOutcome(
                        standardOutput: child.collected,
                        waitStatus: child.waitStatus,
                        timedOut: child.timedOut,
                        spawnError: child.spawnError,
                        killed: child.killed
                    )
                )
                exited()
                return true
            }
        }
    }

    /// Asks a guard to kill its program's tree now (shutdown); it reports as usual once the tree is gone.
    private func askToStop(_ child: inout RunningChild) {
        guard !child.askedToStop, !child.finished, child.control >= 0 else { return }
        child.askedToStop = true
        var byte: UInt8 = 1
        let fd = child.control
        _ = try? systemCall("send") { send(fd, &byte, 1, CInt(MSG_NOSIGNAL)) }
    }

    private func drainWakeup() {
        var bytes = [UInt8](repeating: 0, count: 64)
        let fd = wakeup.readDescriptor
        while let count = try? nonBlockingSystemCall("read", { read(fd, &bytes, bytes.count) }), count > 0 {}
    }

    /// Sends the program of `request` to the spawner (its guard reports on the control socket), or reports at once
    /// why it could not start.
    private mutating func start(_ request: ProcessRequest, exited: () -> Void) {
        var child = RunningChild(pid: 0, request: request, deadline: clock.now + request.timeout)
        var toClose: [CInt] = []
        // The connection is the runner's from now on: closed here, once, or handed to the spawner with the rest.
        if case .socket(let fd) = request.input { toClose.append(fd) }
        defer { for fd in toClose { close(fd) } }
        do throws(SystemCallError) {
            if spawner == nil, clock.now >= spawnerRetry { startSpawner() }
            guard let spawnerUser = spawner?.user else {
                throw SystemCallError(call: "fork", errno: ECHILD, context: "no program spawner: \(spawnerMissing)")
            }
            let message = try ChildSpawn.request(
                argv: request.argv,
                environment: request.environment,
                identity: request.identity,
                timeout: request.timeout,
                spawnerUser: spawnerUser
            )
            let errors = try Self.makeRequestPipe()
            toClose.append(errors.write)
            child.standardError = errors.read
            let standardStreams: [CInt]
            switch request.input {
            case .bytes(let bytes, let limit):
                let input = try Self.makeRequestPipe()
                toClose += [input.read]
                child.standardInput = input.write
                let output = try Self.makeRequestPipe()
                toClose += [output.write]
                child.standardOutput = output.read
                try Self.makeBlocking(input.read, output.write, errors.write)
                child.pendingInput = bytes
                child.captureLimit = limit
                standardStreams = [input.read, output.write, errors.write]
            case .socket(let fd):
                try Self.makeBlocking(fd, errors.write)
                standardStreams = [fd, fd, errors.write]
            }
            let control = try Self.makeControlSocket()
            child.control = control.runner
            // Everything in toClose goes to the spawner, which closes udpd's copies once sent.
            spawner?.send(message, passing: standardStreams + [control.guardEnd])
            toClose = []
        } catch {
            for fd in [child.standardInput, child.standardOutput, child.standardError, child.control] where fd >= 0 {
                close(fd)
            }
            request.onExit(ProcessOutcome(standardOutput: [], waitStatus: nil, timedOut: false, spawnError: error))
            exited()
            return
        }
        if child.pendingInput.isEmpty, child.standardInput >= 0 {
            close(child.standardInput)
            child.standardInput = -1
        }
        children.append(child)
    }

    /// A guard's control socket (SOCK_SEQPACKET, close-on-exec): the runner's end, and the guard's, which goes to
    /// the spawner with the request. Into udpd's headroom it throws EMFILE, like the pipes.
    private static func makeControlSocket() throws(SystemCallError) -> (runner: CInt, guardEnd: CInt) {
        var pair: [CInt] = [-1, -1]
        try systemCall("socketpair", context: "an exec program's guard") {
            socketpair(AF_UNIX, CInt(SOCK_SEQPACKET.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0, &pair)
        }
        do {
            try DescriptorTable.checkHeadroom(pair.max()!, call: "socketpair", context: "an exec program's guard")
        } catch {
            close(pair[0])
            close(pair[1])
            throw error
        }
        return (pair[0], pair[1])
    }

    /// A pipe for one program; out of descriptors, or into the few udpd keeps for itself, it throws EMFILE (the
    /// request is refused and counted as `no_descriptor`) and leaves nothing open.
    private static func makeRequestPipe() throws(SystemCallError) -> (read: CInt, write: CInt) {
        let pipe = try makeNonBlockingPipe()
        do {
            try DescriptorTable.checkHeadroom(
                max(pipe.read, pipe.write),
                call: "pipe2",
                context: "an exec program's pipe"
            )
        } catch {
            close(pipe.read)
            close(pipe.write)
            throw error
        }
        return pipe
    }

    /// Clears O_NONBLOCK on descriptors a program will use as its stdin, stdout and stderr: programs expect
    /// blocking standard streams, and a `cat` that reads before the datagram is written would otherwise get
    /// EAGAIN and give up. (A TCP connection comes from the ConnectionAcceptor blocking already.)
    private static func makeBlocking(_ descriptors: CInt...) throws(SystemCallError) {
        for fd in descriptors { try setNonBlocking(fd, false, context: "a program's standard stream") }
    }

    /// Waits for I/O on any child's pipes, the wakeup pipe, the spawner's socket (its end, or room for what waits),
    /// the next deadline, or a short tick while some child has closed its pipes but has not been reaped yet.
    /// Returns the events of the spawner's socket.
    private func pollOnce() -> Int16 {
        var fds = [pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)]
        if let spawner {
            let events = POLLIN | (spawner.hasQueuedRequests ? POLLOUT : 0)
            fds.append(pollfd(fd: spawner.socket, events: Int16(events), revents: 0))
        }
        var timeout = Duration.milliseconds(250)
        let now = clock.now
        for child in children {
            if child.standardInput >= 0 {
                fds.append(pollfd(fd: child.standardInput, events: Int16(POLLOUT), revents: 0))
            }
            if child.standardOutput >= 0 {
                fds.append(pollfd(fd: child.standardOutput, events: Int16(POLLIN), revents: 0))
            }
            if child.standardError >= 0 {
                fds.append(pollfd(fd: child.standardError, events: Int16(POLLIN), revents: 0))
            }
            if child.control >= 0, !child.finished {
                fds.append(pollfd(fd: child.control, events: Int16(POLLIN), revents: 0))
                let patience = child.killRequested ? Self.guardGrace * 2 : Self.guardGrace
                timeout = min(timeout, max(.zero, child.deadline + patience - now))
            } else if !child.guardReaped {
                timeout = min(timeout, .milliseconds(5))
            }
        }
        let milliseconds = CInt(clamping: timeout.saturatingMilliseconds)
        _ = try? systemCall("poll") { poll(&fds, nfds_t(fds.count), max(1, milliseconds)) }
        return spawner != nil ? fds[1].revents : 0
    }

    /// How long past a program's timeout udpd waits for its guard's report before it kills the guard itself.
    static let guardGrace = Duration.seconds(5)

    /// Moves a child's I/O forward, takes its guard's reports and reaps the guard (when it is udpd's child: the
    /// spawner reaps its own).
    ///
    /// The last report comes first: once the tree is gone, everything it wrote is already in its pipes, so the
    /// reads below collect all of it before the pipes are closed.
    private mutating func service(_ child: inout RunningChild) {
        while !child.finished {
            var report = cudpd_guard_report()
            let fd = child.control
            let count = try? nonBlockingSystemCall("recv") {
                recv(fd, &report, MemoryLayout<cudpd_guard_report>.size, CInt(MSG_DONTWAIT))
            }
            if count == MemoryLayout<cudpd_guard_report>.size, report.kind == 1 {
                if report.error != 0 {
                    child.spawnError = SystemCallError(
                        call: "fork+execve",
                        errno: report.error,
                        context: "\(child.request.argv[0]) as \(child.request.identity?.description ?? "udpd's user")"
                    )
                    child.finished = true
                } else {
                    child.started = true
                    child.pid = report.process
                }
            } else if count == MemoryLayout<cudpd_guard_report>.size, report.kind == 2 {
                child.finished = true
                child.waitStatus = report.exited != 0 ? report.status : nil
                child.timedOut = report.timed_out != 0
                child.killed = Int(report.killed)
            } else if count == 0 {
                // Neither the guard nor the spawner holds the other end any more, and no last report came.
                child.finished = true
                if child.started {
                    child.timedOut = clock.now >= child.deadline
                    child.lost = true
                } else {
                    child.spawnError = SystemCallError(
                        call: "fork",
                        errno: ECHILD,
                        context: "the program spawner ended before it started \(child.request.argv[0])"
                    )
                }
            } else {
                let now = clock.now
                if now >= child.deadline + Self.guardGrace * 2 {
                    // Not even the spawner answered: give up on the guard (closing the control socket asks it to
                    // kill its tree, should it still run).
                    child.finished = true
                    child.timedOut = true
                    if !child.started {
                        child.spawnError = SystemCallError(
                            call: "fork",
                            errno: ETIMEDOUT,
                            context: "the program spawner did not start \(child.request.argv[0])"
                        )
                    }
                } else if now >= child.deadline + Self.guardGrace, !child.killRequested {
                    // The guard is stuck (stopped, say): its parent, the spawner, kills it, then its tree.
                    child.killRequested = true
                    if child.started { spawner?.killGuard(child.pid) }
                }
                break
            }
        }
        if child.finished, !child.guardReaped {
            var status: CInt = 0
            let pid = child.pid
            // A guard is udpd's child only if the spawner died before it: then it is reaped here.
            let reaped = pid > 0 ? try? systemCall("waitpid") { waitpid(pid, &status, WNOHANG) } : nil
            if reaped == pid || reaped == nil { child.guardReaped = true }
        }
        if child.standardInput >= 0 {
            let fd = child.standardInput
            let written: Int?
            do {
                written = try child.pendingInput.withUnsafeBytes { (bytes) throws(SystemCallError) in
                    try nonBlockingSystemCall("write") { write(fd, bytes.baseAddress, bytes.count) }
                }
            } catch {
                written = -1  // the program closed its stdin early (EPIPE): it has what it wanted
            }
            if let written, written > 0 { child.pendingInput.removeFirst(written) }
            if child.pendingInput.isEmpty || written == -1 {
                close(child.standardInput)
                child.standardInput = -1
            }
        }
        if child.standardOutput >= 0 {
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let fd = child.standardOutput
            while true {
                let count = Self.readSome(fd, into: &buffer)
                if let count, count > 0 {
                    let room = max(0, child.captureLimit - child.collected.count)
                    child.collected += buffer.prefix(min(count, room))
                    continue
                }
                if count != nil {
                    close(child.standardOutput)
                    child.standardOutput = -1
                }
                break
            }
        }
        if child.standardError >= 0 { readStandardError(&child) }
        if child.finished, child.pipesOpen {
            // Its tree is gone and its pipes have been drained above.
            for fd in [child.standardInput, child.standardOutput, child.standardError] where fd >= 0 { close(fd) }
            if !child.errorLine.isEmpty {
                child.request.onStandardError(String(decoding: child.errorLine, as: UTF8.self))
            }
            child.standardInput = -1
            child.standardOutput = -1
            child.standardError = -1
        }
    }

    /// Reads what is waiting: `nil` when nothing is, 0 at end of file or on an error (both end the stream).
    private static func readSome(_ fd: CInt, into buffer: inout [UInt8]) -> Int? {
        do {
            return try buffer.withUnsafeMutableBytes { (bytes) throws(SystemCallError) in
                try nonBlockingSystemCall("read") { read(fd, bytes.baseAddress, bytes.count) }
            }
        } catch {
            return 0
        }
    }

    /// Passes each complete stderr line on; a line is cut at 4 KiB.
    private func readStandardError(_ child: inout RunningChild) {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let fd = child.standardError
            let count = Self.readSome(fd, into: &buffer)
            if let count, count > 0 {
                for byte in buffer.prefix(count) {
                    if byte == UInt8(ascii: "\n") || child.errorLine.count >= 4096 {
                        child.request.onStandardError(String(decoding: child.errorLine, as: UTF8.self))
                        child.errorLine.removeAll(keepingCapacity: true)
                        if byte == UInt8(ascii: "\n") { continue }
                    }
                    child.errorLine.append(byte)
                }
                continue
            }
            if count != nil {
                close(child.standardError)
                child.standardError = -1
                if !child.errorLine.isEmpty {
                    child.request.onStandardError(String(decoding: child.errorLine, as: UTF8.self))
                    child.errorLine = []
                }
            }
            return
        }
    }

    /// Kills and reaps every child of udpd that is not a guard udpd knows (besides `except`, a guard being
    /// reaped): the tree of a guard lost with the spawner, which reparented to udpd, the subreaper. Returns how many
    /// it killed (none where it runs as another user and udpd dropped its privileges: its guard, gone without its
    /// last report, could not be asked anyway).
    private static func killOrphans(except lost: pid_t, known: Set<pid_t>) -> Int {
        var killed = 0
        for _ in 0..<64 {
            let orphans = Self.childrenOfThisProcess().filter { !known.contains($0) && $0 != lost }
            if orphans.isEmpty { break }
            let dead = orphans.filter { kill($0, SIGKILL) == 0 }
            if dead.isEmpty { break }  // nothing this thread may kill: waiting for them could block forever
            killed += dead.count
            for pid in dead {
                var status: CInt = 0
                _ = try? systemCall("waitpid") { waitpid(pid, &status, 0) }
            }
        }
        return killed
    }

    /// The children of every thread of udpd, from /proc/self/task/*/children.
    private static func childrenOfThisProcess() -> [pid_t] {
        guard let directory = opendir("/proc/self/task") else { return [] }
        defer { closedir(directory) }
        var found: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let task = Int32(name) else { continue }
            guard let fd = try? systemCall("open", { open("/proc/self/task/\(task)/children", O_RDONLY | O_CLOEXEC) })
            else { continue }
            defer { close(fd) }
            var bytes = [UInt8](repeating: 0, count: 4096)
            var text: [UInt8] = []
            while let count = try? systemCall("read", { read(fd, &bytes, bytes.count) }), count > 0 {
                text += bytes.prefix(count)
            }
            found += String(decoding: text, as: UTF8.self).split(separator: " ").compactMap { pid_t($0) }
        }
        return found
    }
}
