import ArgumentParser
import UDPDControl

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// `udpctl status [--json]`.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the daemon's services, listeners, counters and last reload.",
        discussion: """
            The table shows one row per listener, with each service's counters on its first row. A reply source \
            marked (!) is "kernel": that listener's replies may leave from the wrong address on a multi-homed host. \
            --json prints the full report (the fields of INTERFACE.md) with sorted keys. \
            Exit status: 0 ok, 1 the daemon answered with an error, 2 no daemon reachable.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    @Flag(help: "Print the status as one pretty-printed JSON object instead of a table.")
    var json = false

    func run() throws {
        let response = try connection.send(.status)
        try requireSuccess(response)
        guard let report = response.status else {
            printError("udpctl: the daemon's answer has no status report")
            throw ExitCode(1)
        }
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(StatusTable.render(report), terminator: "")
        }
    }
}
