import CUDPD
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

/// Runs the programs of every exec service on one dedicated thread: it starts each under its own guard process
/// (see ``ChildSpawn``), feeds their stdin, collects their stdout and stderr, and reaps the guards, which report
/// once the program's whole tree is gone (they kill it at the timeout).
///
/// udpd is a child subreaper too: a guard lost by accident leaves its tree to udpd, which kills and counts it.
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

    /// What the privileged thread must keep to start programs as their own user: CAP_SETUID, CAP_SETGID (the
    /// switch), CAP_SETPCAP (to empty the program's bounding set) and CAP_KILL (for its guard to kill its tree).
    public static var capabilitiesToStartPrograms: UInt32 { cudpd_program_spawn_capabilities }

    private static let started = Atomic<Bool>(false)
    private static let privileged = Mutex<PrivilegedBinder?>(nil)

    /// From now on, starts programs (and kills lost trees) on `binder`'s thread, the one that kept
    /// ``capabilitiesToStartPrograms`` when udpd dropped its privileges. Its thread lives as long as udpd.
    public static func startPrograms(on binder: PrivilegedBinder) {
        privileged.withLock { $0 = binder }
    }

    /// Whether udpd was started as root: it runs as root still, or it dropped to its `user:` and kept a
    /// privileged thread. Programs then run as `nobody` unless their service names a user.
    public static var startedAsRoot: Bool { geteuid() == 0 || privileged.withLock { $0 != nil } }

    /// Runs `body` with the privileges needed to start a program as another user and to kill its tree.
    static func withPrivileges<Result: Sendable>(
        _ body: @escaping @Sendable () throws(SystemCallError) -> Result
    ) throws(SystemCallError) -> Result {
        if let binder = privileged.withLock({ $0 }) { return try binder.runWaiting(body) }
        return try body()
    }

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
        let thread = try WorkerThread(name: "udpd-exec") { [unowned self] in
            var loop = ProcessRunnerLoop(wakeup: wakeup)
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
    /// The guard's pid (0 until started).
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
    /// The guard died or hung without reporting; its tree is udpd's to kill.
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

    init(wakeup: WakeupPipe) {
        self.wakeup = wakeup
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
            pollOnce()
            let stopNow = stopBy().map { clock.now >= $0 } ?? false
            for index in children.indices {
                if stopNow { askToStop(&children[index]) }
                service(&children[index])
            }
            // Only once the lost guard is reaped has its tree reparented to udpd.
            for index in children.indices where children[index].lost && children[index].guardReaped {
                children[index].lost = false
                let known = Set(children.map(\.pid))
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
                        spawnError: nil,
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

    /// Spawns the program of `request`, or reports at once why it could not start.
    private mutating func start(_ request: ProcessRequest, exited: () -> Void) {
        var child = RunningChild(pid: 0, request: request, deadline: clock.now + request.timeout)
        var toClose: [CInt] = []
        // The connection is the runner's from now on: closed here, once, whether or not the program starts.
        if case .socket(let fd) = request.input { toClose.append(fd) }
        defer { for fd in toClose { close(fd) } }
        do {
            let errors = try Self.makeRequestPipe()
            toClose.append(errors.write)
            child.standardError = errors.read
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
                let (argv, environment, identity, timeout) =
                    (request.argv, request.environment, request.identity, request.timeout)
                let started = try ProcessRunner.withPrivileges { () throws(SystemCallError) in
                    try ChildSpawn.spawn(
                        argv: argv,
                        environment: environment,
                        stdin: input.read,
                        stdout: output.write,
                        stderr: errors.write,
                        identity: identity,
                        timeout: timeout
                    )
                }
                child.pid = started.guardProcess
                child.control = started.control
            case .socket(let fd):
                try Self.makeBlocking(fd, errors.write)
                let (argv, environment, identity, timeout) =
                    (request.argv, request.environment, request.identity, request.timeout)
                let started = try ProcessRunner.withPrivileges { () throws(SystemCallError) in
                    try ChildSpawn.spawn(
                        argv: argv,
                        environment: environment,
                        stdin: fd,
                        stdout: fd,
                        stderr: errors.write,
                        identity: identity,
                        timeout: timeout
                    )
                }
                child.pid = started.guardProcess
                child.control = started.control
            }
        } catch {
            for fd in [child.standardInput, child.standardOutput, child.standardError] where fd >= 0 { close(fd) }
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

    /// Waits for I/O on any child's pipes, the wakeup pipe, the next deadline, or a short tick while some child
    /// has closed its pipes but has not been reaped yet.
    private func pollOnce() {
        var fds = [pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0)]
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
                timeout = min(timeout, max(.zero, child.deadline + Self.guardGrace - now))
            } else if !child.guardReaped {
                timeout = min(timeout, .milliseconds(5))
            }
        }
        let milliseconds = CInt(clamping: timeout.saturatingMilliseconds)
        _ = try? systemCall("poll") { poll(&fds, nfds_t(fds.count), max(1, milliseconds)) }
    }

    /// How long past a program's timeout udpd waits for its guard's report before it kills the guard itself.
    static let guardGrace = Duration.seconds(5)

    /// Moves a child's I/O forward, takes its guard's report and reaps the guard.
    ///
    /// The report comes first: once the tree is gone, everything it wrote is already in its pipes, so the reads
    /// below collect all of it before the pipes are closed.
    private func service(_ child: inout RunningChild) {
        if !child.finished {
            var report = cudpd_guard_report()
            let fd = child.control
            let count = try? nonBlockingSystemCall("recv") {
                recv(fd, &report, MemoryLayout<cudpd_guard_report>.size, CInt(MSG_DONTWAIT))
            }
            if count == MemoryLayout<cudpd_guard_report>.size, report.kind == 2 {
                child.finished = true
                child.waitStatus = report.exited != 0 ? report.status : nil
                child.timedOut = report.timed_out != 0
                child.killed = Int(report.killed)
            } else if count == 0 || clock.now >= child.deadline + Self.guardGrace {
                // The guard is gone without a report, or stuck: its tree (now udpd's) is killed here.
                let guardProcess = child.pid
                _ = try? systemCall("kill") { kill(guardProcess, SIGKILL) }
                child.finished = true
                child.timedOut = clock.now >= child.deadline
                child.lost = true
            }
        }
        if child.finished, !child.guardReaped {
            var status: CInt = 0
            let pid = child.pid
            let reaped = try? systemCall("waitpid") { waitpid(pid, &status, WNOHANG) }
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
    /// reaped): the tree of a guard that was lost, which reparented to udpd, the subreaper. Returns how many it
    /// killed. Runs with the privileged thread's CAP_KILL, since the tree runs as another user.
    private static func killOrphans(except lost: pid_t, known: Set<pid_t>) -> Int {
        var killed = 0
        for _ in 0..<64 {
            let orphans = Self.childrenOfThisProcess().filter { !known.contains($0) && $0 != lost }
            if orphans.isEmpty { break }
            let dead =
                (try? ProcessRunner.withPrivileges { () throws(SystemCallError) -> [pid_t] in
                    orphans.filter { kill($0, SIGKILL) == 0 }
                }) ?? []
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
