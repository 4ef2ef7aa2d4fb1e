import ArgumentParser
import UDPDControl

/// `udpctl metrics`.
struct Metrics: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the daemon's metrics in the Prometheus text format.",
        discussion: """
            Every family has # HELP and # TYPE lines and a udpd_ prefix; figures that belong to a service carry \
            a service label. Exit status: 0 ok, 1 the daemon answered with an error, 2 no daemon reachable.
            """
    )

    @OptionGroup var connection: ConnectionOptions

    func run() throws {
        let response = try connection.send(.metrics)
        try requireSuccess(response)
        guard let metrics = response.metrics else {
            printError("udpctl: the daemon's answer has no metrics")
            throw ExitCode(1)
        }
        print(metrics, terminator: metrics.hasSuffix("\n") ? "" : "\n")
    }
}
