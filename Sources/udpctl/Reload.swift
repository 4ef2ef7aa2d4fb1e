import ArgumentParser
import UDPDControl

/// `udpctl reload`.
struct Reload: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reload the daemon's configuration file now and wait for the outcome.",
        discussion: """
            Does what SIGHUP does, but waits for the result (up to 30 seconds unless --timeout says otherwise) and \
            prints what changed. A rejected configuration changes nothing: the old one keeps running, and its \
            errors are printed to standard error, one FILE:LINE:COLUMN: error: MESSAGE line each. \
            Exit status: 0 applied, 1 rejected, 2 no daemon reachable.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let response = try connection.send(.reload)
        guard let report = response.reload else {
            try requireSuccess(response)
            printError("udpctl: the daemon's answer has no reload report")
            throw ExitCode(1)
        }
        if report.ok && response.ok {
            print(report.text, terminator: "")
        } else {
            printError(String(report.text.dropLast()))
            throw ExitCode(1)
        }
    }
}
