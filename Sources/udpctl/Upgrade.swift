import ArgumentParser
import UDPDControl

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `udpctl upgrade [--binary PATH]`.
struct Upgrade: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace the running udpd by a new process (a new binary) without closing any socket.",
        discussion: """
            The daemon starts a new udpd (its own executable as it is on disk now, or --binary PATH) with the same \
            configuration file and hands it every listening socket; once the new one serves, the old one stops \
            reading, finishes its TCP connections, forward sessions and programs within the grace period, and \
            exits. SIGUSR2 to udpd does the same without waiting for the outcome. Prints the new daemon's pid. \
            Exit status: 0 the new daemon serves; 1 it refused or failed (the reason is printed, the old daemon \
            keeps serving), or the daemon answered with an error; 2 no daemon reachable.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: ArgumentHelp("The udpd executable to start instead of the daemon's own.", valueName: "path"))
    var binary: String?

    func run() throws {
        // The daemon starts the binary from its own working directory: a relative path is made absolute here.
        let path = binary.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
        let response = try connection.send(ControlRequest(command: .upgrade, binary: path))
        guard response.ok, let upgrade = response.upgrade else {
            printError("udpctl: upgrade failed: \(response.error ?? "no reason given")")
            throw ExitCode(1)
        }
        print("\(upgrade.pid)")
    }
}
