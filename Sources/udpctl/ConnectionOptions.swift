import ArgumentParser
import UDPDConfig
import UDPDControl

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How to find the daemon: `-s PATH`, `-c FILE` or the default path; shared by the root command and subcommands.
struct ConnectionOptions: ParsableArguments {
    @Option(name: [.customShort("s"), .long], help: ArgumentHelp("The control socket's path.", valueName: "path"))
    var socket: String?

    @Option(
        name: [.customShort("c"), .long],
        help: ArgumentHelp(
            "Read the control socket's path from this udpd configuration file (control.socket).",
            discussion: "An invalid file prints its errors and exits with status 2.",
            valueName: "file"
        )
    )
    var config: String?

    @Option(
        help: ArgumentHelp(
            "Seconds to wait for the answer, 0.001 to 3600 (default: 30 for reload, 60 for upgrade, 5 otherwise).",
            valueName: "seconds"
        )
    )
    var timeout: Double?

    func validate() throws {
        if socket != nil && config != nil {
            throw ValidationError("-s/--socket and -c/--config are alternatives; give one of them.")
        }
        // Checked here, not where it is used: 1e19 seconds once trapped converting to milliseconds.
        if let timeout, !Self.timeoutRange.contains(timeout) {
            throw ValidationError(
                "--timeout must be a number of seconds from \(Self.timeoutRange.lowerBound) to "
                    + "\(Int(Self.timeoutRange.upperBound)), found \(timeout)."
            )
        }
    }

    /// Seconds `--timeout` may be: at least a millisecond (the unit waits are counted in), at most an hour (a
    /// reload that takes longer has gone wrong). Excludes NaN and the infinities.
    static let timeoutRange = 0.001...3600.0

    /// The socket path: `-s`, else `control.socket` of `-c FILE`, else the default for this user.
    func socketPath() throws -> String {
        if let socket { return socket }
        if let config { return try socketPath(fromConfig: config) }
        return ControlSocketPath.defaultPath()
    }

    /// `control.socket` of the configuration at `file`, or the default path when it sets none; an invalid file
    /// prints its errors (one `FILE:LINE:COLUMN: error: MESSAGE` line each) and exits 2.
    func socketPath(fromConfig file: String) throws -> String {
        do {
            let configuration = try ConfigurationLoader.load(path: file)
            return configuration.control.socket ?? ControlSocketPath.defaultPath()
        } catch {
            printError("\(error)")
            throw ExitCode(2)
        }
    }

    /// Sends `command` to the daemon; exits 2 when it cannot be reached and 1 when its answer is unusable.
    func send(_ command: ControlCommand) throws -> ControlResponse {
        try send(ControlRequest(command: command))
    }

    func send(_ request: ControlRequest) throws -> ControlResponse {
        let command = request.command
        let path = try socketPath()
        // `validate()` bounds the value; the conversion clamps all the same rather than trap.
        let wait =
            timeout.map { Duration.milliseconds(Int64(exactly: ($0 * 1000).rounded()) ?? Int64(3_600_000)) }
            ?? ControlClient.defaultTimeout(for: command)
        do {
            return try ControlClient.send(request, to: path, timeout: wait)
        } catch {
            printError("udpctl: \(error)")
            throw ExitCode(error.isUnreachable ? 2 : 1)
        }
    }
}

/// Writes `message` and a newline to standard error; each of its lines escaped (``TextEscaping``), so that text from
/// the daemon or a path cannot drive the terminal.
func printError(_ message: String) {
    let escaped = message.split(separator: "\n", omittingEmptySubsequences: false).map { TextEscaping.escaped($0) }
    let bytes = Array((escaped.joined(separator: "\n") + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// Exits 1 with the daemon's error when `response` is a failure without a more specific report.
func requireSuccess(_ response: ControlResponse) throws {
    guard response.ok else {
        printError("udpctl: the daemon refused: \(response.error ?? "no reason given")")
        throw ExitCode(1)
    }
}
