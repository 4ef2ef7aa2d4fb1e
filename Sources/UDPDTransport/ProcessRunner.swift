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
    /// How long the program may run before its process group is killed.
    public var timeout: Duration
    /// Whom the program runs as; `nil` for udpd's own user.
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
    /// The wait status `waitpid` reported; `nil` when the program could not be started.
    public var waitStatus: CInt?
    /// Whether it ran past its timeout and was killed.
    public var timedOut: Bool
    /// Why it could not be started, if it could not.
    public var spawnError: SystemCallError?

    /// The signal that ended a process with wait status `status`, or `nil` when it exited (WIFSIGNALED and
    /// WTERMSIG are macros Swift cannot import).
    public static func terminatingSignal(_ status: CInt) -> CInt? {
        let signal = status & 0x7f
        return signal != 0 && signal != 0x7f ? signal : nil
    }
}

/// Runs the programs of every exec service on one dedicated thread: it spawns them, feeds their stdin, collects
/// their stdout and stderr, kills a process group that runs past its timeout, and reaps every child it started
/// (by its pid, so it never steals another part's children).
///
/// One runner serves the whole process, so rebuilding handlers on reload creates no threads.
/// `Sendable`: requests reach the thread through a mutex-protected queue and a wakeup pipe; everything else lives
/// on the thread.
public final class ProcessRunner: Sendable {
    /// The process-wide runner, started on first use.
    public static let shared: ProcessRunner = {
        do {
            return try ProcessRunner()
        } catch {
            fatalError("cannot start the exec runner thread: \(error)")
        }
    }()

    private let queue = Mutex<[ProcessRequest]>([])
    private let wakeup: WakeupPipe

    private init() throws(SystemCallError) {
        let wakeup = try WakeupPipe()
        self.wakeup = wakeup
        let thread = try WorkerThread(name: "udpd-exec") { [unowned self] in
            var loop = ProcessRunnerLoop(wakeup: wakeup)
            loop.run(take: {
                self.queue.withLock { pending in
                    defer { pending = [] }
                    return pending
                }
            })
        }
        _ = thread  // runs as long as the process
    }

    /// Queues `request`; its `onExit` is always called exactly once.
    public func run(_ request: ProcessRequest) {
        queue.withLock { $0.append(request) }
        wakeup.wake()
    }
}

/// A program the runner started and has not finished with.
private struct RunningChild {
    var pid: pid_t
    var request: ProcessRequest
    var deadline: ContinuousClock.Instant
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
}

/// The runner's loop; lives on its thread only.
private struct ProcessRunnerLoop {
    let wakeup: WakeupPipe
    var children: [RunningChild] = []
    let clock = ContinuousClock()

    init(wakeup: WakeupPipe) {
        self.wakeup = wakeup
    }

    mutating func run(take: () -> [ProcessRequest]) {
        while true {
            drainWakeup()
            for request in take() { start(request) }
            pollOnce()
            for index in children.indices { service(&children[index]) }
            children.removeAll { child in
                guard child.waitStatus != nil, !child.pipesOpen else { return false }
                child.request.onExit(
                    ProcessOutcome(
                        standardOutput: child.collected,
                        waitStatus: child.waitStatus,
                        timedOut: child.timedOut,
                        spawnError: nil
                    )
                )
                return true
            }
        }
    }

    private func drainWakeup() {
        var bytes = [UInt8](repeating: 0, count: 64)
        let fd = wakeup.readDescriptor
        while let count = try? nonBlockingSystemCall("read", { read(fd, &bytes, bytes.count) }), count > 0 {}
    }

    /// Spawns the program of `request`, or reports at once why it could not start.
    private mutating func start(_ request: ProcessRequest) {
        var child = RunningChild(pid: 0, request: request, deadline: clock.now + request.timeout)
        var toClose: [CInt] = []
        defer { for fd in toClose { close(fd) } }
        do {
            let errors = try makeNonBlockingPipe()
            toClose.append(errors.write)
            child.standardError = errors.read
            switch request.input {
            case .bytes(let bytes, let limit):
                let input = try makeNonBlockingPipe()
                let output = try makeNonBlockingPipe()
                toClose += [input.read, output.write]
                try Self.makeBlocking(input.read, output.write, errors.write)
                child.standardInput = input.write
                child.pendingInput = bytes
                child.standardOutput = output.read
                child.captureLimit = limit
                child.pid = try ChildSpawn.spawn(
                    argv: request.argv,
                    environment: request.environment,
                    stdin: input.read,
                    stdout: output.write,
                    stderr: errors.write,
                    identity: request.identity
                )
            case .socket(let fd):
                toClose.append(fd)
                try Self.makeBlocking(fd, errors.write)
                child.pid = try ChildSpawn.spawn(
                    argv: request.argv,
                    environment: request.environment,
                    stdin: fd,
                    stdout: fd,
                    stderr: errors.write,
                    identity: request.identity
                )
            }
        } catch {
            for fd in [child.standardInput, child.standardOutput, child.standardError] where fd >= 0 { close(fd) }
            request.onExit(ProcessOutcome(standardOutput: [], waitStatus: nil, timedOut: false, spawnError: error))
            return
        }
        if child.pendingInput.isEmpty, child.standardInput >= 0 {
            close(child.standardInput)
            child.standardInput = -1
        }
        children.append(child)
    }

    /// Clears O_NONBLOCK on descriptors a program will use as its stdin, stdout and stderr: programs expect
    /// blocking standard streams, and a `cat` that reads before the datagram is written would otherwise get
    /// EAGAIN and give up. (For a TCP connection this changes the socket udpd is about to close; SwiftNIO never
    /// reads it, see ExecStreamHandler.)
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
            if child.waitStatus == nil {
                timeout = min(timeout, child.pipesOpen ? max(.zero, child.deadline - now) : .milliseconds(5))
            }
        }
        let milliseconds = CInt(clamping: timeout.saturatingMilliseconds)
        _ = try? systemCall("poll") { poll(&fds, nfds_t(fds.count), max(1, milliseconds)) }
    }

    /// Moves a child's I/O forward, reaps it when it has exited, and kills it at its deadline.
    ///
    /// The child is reaped first: once it has exited, everything it wrote is already in its pipes, so the reads
    /// below collect all of it before the pipes are closed (reaping after reading could lose a last write).
    private func service(_ child: inout RunningChild) {
        if child.waitStatus == nil {
            var status: CInt = 0
            let pid = child.pid
            if (try? systemCall("waitpid") { waitpid(pid, &status, WNOHANG) }) == pid {
                child.waitStatus = status
            } else if !child.timedOut, clock.now >= child.deadline {
                child.timedOut = true
                _ = try? systemCall("kill") { kill(-pid, SIGKILL) }
            }
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
        if child.waitStatus != nil, child.pipesOpen {
            // It has exited and its pipes have been drained above; a grandchild that kept them is not waited for.
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
}
