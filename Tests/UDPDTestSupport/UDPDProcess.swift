import Foundation
import UDPDControl

/// A real `udpd` started on a temporary configuration and control socket; killed on deinit whatever happened.
public final class UDPDProcess {
    /// The temporary directory holding the configuration, the control socket and the log.
    public let directory: TemporaryDirectory
    /// The configuration file's path.
    public let configPath: String
    /// The control socket's path.
    public let socketPath: String
    private let process = Process()
    private let logPath: String

    /// Writes `config` (YAML) and starts `udpd -c FILE --control-socket SOCK` with `environment` added.
    /// `socketPath` overrides the control socket (by default one in the temporary directory). With a `launcher`
    /// (a program and its arguments), that program is started with udpd's path and arguments appended, and is
    /// expected to exec udpd in its own process (as a socket-activation launcher does).
    public init(
        config: String,
        socketPath: String? = nil,
        environment: [String: String] = [:],
        arguments: [String] = [],
        launcher: [String] = []
    ) throws {
        directory = try TemporaryDirectory()
        configPath = try directory.write("services.yaml", config)
        self.socketPath = socketPath ?? directory.file("control.sock")
        logPath = directory.file("udpd.log")
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let udpdArguments = ["-c", configPath, "--control-socket", self.socketPath] + arguments
        if let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = Array(launcher.dropFirst()) + [BuiltProducts.path("udpd")] + udpdArguments
        } else {
            process.executableURL = URL(fileURLWithPath: BuiltProducts.path("udpd"))
            process.arguments = udpdArguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        process.standardError = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The process id.
    public var pid: Int32 { process.processIdentifier }

    /// Whether it still runs.
    public var isRunning: Bool { process.isRunning }

    /// Everything udpd logged so far.
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the control socket answers a status request; throws with the log if udpd exits or stalls.
    @discardableResult
    public func waitUntilReady(timeout: Duration = .seconds(20)) throws -> StatusReport {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                throw TestFailure("udpd exited with \(process.terminationStatus) before it was ready:\n\(log)")
            }
            if let response = try? ControlClient.send(
                ControlRequest(command: .status),
                to: socketPath,
                timeout: .seconds(2)
            ),
                let status = response.status
            {
                return status
            }
            usleep(20_000)
        }
        throw TestFailure("udpd did not answer on \(socketPath) within \(timeout):\n\(log)")
    }

    /// Asks the daemon for its status.
    public func status() throws -> StatusReport {
        let response = try ControlClient.send(ControlRequest(command: .status), to: socketPath, timeout: .seconds(5))
        guard let status = response.status else { throw TestFailure("no status in \(response)") }
        return status
    }

    /// Runs the built `udpctl -s SOCK ARGS...`.
    public func udpctl(_ arguments: [String]) throws -> CommandResult {
        try runCommand(BuiltProducts.path("udpctl"), ["-s", socketPath] + arguments)
    }

    /// Sends `signal` to udpd.
    public func send(signal: Int32) {
        kill(process.processIdentifier, signal)
    }

    /// Waits for udpd to exit; its exit status, or `nil` if it still runs after `timeout`.
    public func waitForExit(timeout: Duration = .seconds(15)) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        guard !process.isRunning else { return nil }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Replaces the configuration file with `config` (for a reload).
    public func rewriteConfig(_ config: String) throws {
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}

extension UDPDProcess {
    /// The counters of `service` in the daemon's status now.
    public func counters(_ service: String) throws -> ServiceCounters {
        guard let counters = try status().services.first(where: { $0.name == service })?.counters else {
            throw TestFailure("no service '\(service)' in status")
        }
        return counters
    }
}

extension UDPDProcess {
    /// Another udpd serving echo over UDP and TCP on 127.0.0.1:`port`, ready: an upstream for a forward under test.
    /// It must be a daemon of its own, since udpd never forwards to, nor answers, one of its own listeners.
    public static func echoUpstream(port: UInt16) throws -> UDPDProcess {
        let upstream = try UDPDProcess(
            config: """
                services:
                  upstream-echo:
                    handler: echo
                    udp: \(port)
                    tcp: \(port)
                    bind: [127.0.0.1]
                """
        )
        try upstream.waitUntilReady()
        return upstream
    }
}
