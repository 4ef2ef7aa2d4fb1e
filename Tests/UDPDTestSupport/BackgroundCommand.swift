import Foundation

/// A command running alongside the test, whose output is collected; killed on deinit if it still runs.
public final class BackgroundCommand {
    private let process = Process()
    private let output = LockedData()
    private let error = LockedData()
    private let outputPipe = Pipe()
    private let errorPipe = Pipe()

    /// Starts `command[0]` with the rest as arguments.
    public init(_ command: [String]) throws {
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.standardOutput = outputPipe
        process.standardError = errorPipe
        process.standardInput = FileHandle.nullDevice
        let output = self.output
        let error = self.error
        outputPipe.fileHandleForReading.readabilityHandler = { output.append($0.availableData) }
        errorPipe.fileHandleForReading.readabilityHandler = { error.append($0.availableData) }
        try process.run()
    }

    /// Waits for the command to end (killing it after `timeout`) and returns what it did.
    public func wait(timeout: Duration = .seconds(30)) -> CommandResult {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        outputPipe.fileHandleForReading.readabilityHandler = nil
        errorPipe.fileHandleForReading.readabilityHandler = nil
        output.append(outputPipe.fileHandleForReading.readDataToEndOfFile())
        error.append(errorPipe.fileHandleForReading.readDataToEndOfFile())
        return CommandResult(status: process.terminationStatus, standardOutput: output.text, standardError: error.text)
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
}
