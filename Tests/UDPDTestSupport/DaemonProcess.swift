import Foundation
import UDPDControl
import UDPDTransport

/// Where `swift build` put the `udpd` and `udpctl` binaries the tests run.
public enum BuiltProducts {
    /// The directory holding the built executables.
    public static let directory: URL = {
        let candidates = [
            URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "")
                .deletingLastPathComponent(),
            Bundle.main.bundleURL.deletingLastPathComponent(),
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent(".build/debug"),
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0.appendingPathComponent("udpd").path) }
            ?? candidates.last!
    }()

    /// The path of the built executable `name`.
    public static func path(_ name: String) -> String {
        directory.appendingPathComponent(name).path
    }

    /// The repository's root directory (for `examples/`).
    public static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
}

/// A temporary directory with a short path (Unix socket paths are limited to about 100 bytes), removed on deinit.
public final class TemporaryDirectory {
    /// The directory's path.
    public let path: String

    /// Creates the directory.
    public init() throws {
        var template = Array("/tmp/udpd-test-XXXXXX".utf8CString)
        guard let created = mkdtemp(&template) else { throw TestFailure("mkdtemp failed") }
        path = String(cString: created)
    }

    /// The path of `name` inside the directory.
    public func file(_ name: String) -> String { "\(path)/\(name)" }

    /// Writes `text` to `name` and returns its path.
    @discardableResult
    public func write(_ name: String, _ text: String) throws -> String {
        let target = file(name)
        try text.write(toFile: target, atomically: true, encoding: .utf8)
        return target
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// The outcome of running a command to its end.
public struct CommandResult: Sendable {
    /// The exit status.
    public var status: Int32
    /// Everything written to standard output.
    public var standardOutput: String
    /// Everything written to standard error.
    public var standardError: String
}

/// Runs `executable` with `arguments` to its end (killing it after `timeout` seconds), with `input` on its stdin
/// (nothing by default).
public func runCommand(
    _ executable: String,
    _ arguments: [String],
    environment: [String: String]? = nil,
    input: String? = nil,
    timeout: TimeInterval = 30
) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    let error = Pipe()
    process.standardOutput = output
    process.standardError = error
    let inputPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
    try process.run()
    if let input {
        inputPipe.fileHandleForWriting.write(Data(input.utf8))
        try? inputPipe.fileHandleForWriting.close()
    }
    let deadline = Date().addingTimeInterval(timeout)
    // Read while it runs, so that a chatty process never blocks on a full pipe.
    let outputData = LockedData()
    let errorData = LockedData()
    output.fileHandleForReading.readabilityHandler = { outputData.append($0.availableData) }
    error.fileHandleForReading.readabilityHandler = { errorData.append($0.availableData) }
    while process.isRunning && Date() < deadline { usleep(10_000) }
    if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    process.waitUntilExit()
    output.fileHandleForReading.readabilityHandler = nil
    error.fileHandleForReading.readabilityHandler = nil
    outputData.append(output.fileHandleForReading.readDataToEndOfFile())
    errorData.append(error.fileHandleForReading.readDataToEndOfFile())
    return CommandResult(
        status: process.terminationStatus,
        standardOutput: outputData.text,
        standardError: errorData.text
    )
}

/// Bytes collected from a pipe's handler thread.
final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()

    func append(_ more: Data) {
        lock.lock()
        data.append(more)
        lock.unlock()
    }

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}
