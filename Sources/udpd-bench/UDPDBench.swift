import ArgumentParser

/// `udpd-bench`: the measuring instrument of `Benchmarks/run.sh`. It is not a test: it reports numbers and judges
/// nothing but its own ability to measure.
@main
struct UDPDBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udpd-bench",
        abstract: "Measure udpd and its comparison servers (see Benchmarks/run.sh and BENCHMARKS.md).",
        subcommands: [LoadCommand.self, ControlBenchmark.self, ReportCommand.self, PortsCommand.self]
    )
}
