import ArgumentParser
import Foundation

/// `udpd-bench report`: turns the JSON lines of a run into Markdown tables, with medians over rounds, the ratios
/// the targets are stated in, and whether each target was met. It reports; it never fails on a missed target.
struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Summarise the JSON lines of `load` and `control` runs as Markdown tables with ratios."
    )

    @Argument(help: "A file of JSON lines written by `udpd-bench load` and `udpd-bench control`.")
    var results: String

    func run() throws {
        let text = try String(contentsOfFile: results, encoding: .utf8)
        var loads: [LoadReport] = []
        var control: ControlReport?
        var idle: IdleConnectionsReport?
        let decoder = JSONDecoder()
        for line in text.split(separator: "\n") where line.hasPrefix("{") {
            let data = Data(line.utf8)
            if let load = try? decoder.decode(LoadReport.self, from: data) {
                loads.append(load)
            } else if let report = try? decoder.decode(ControlReport.self, from: data) {
                control = report
            } else if let report = try? decoder.decode(IdleConnectionsReport.self, from: data),
                report.label == "tcp-idle"
            {
                idle = report
            }
        }
        var labels: [String] = []
        for load in loads where !labels.contains(load.label) { labels.append(load.label) }
        let summaries = Dictionary(
            uniqueKeysWithValues: labels.map { label in
                (label, Summary(loads.filter { $0.label == label }))
            }
        )
        printLoadTable(labels: labels, summaries: summaries)
        printTargets(summaries: summaries, pairs: PairedRounds(loads), control: control, idle: idle)
    }

    private func printLoadTable(labels: [String], summaries: [String: Summary]) {
        print(
            "| measurement | rounds | requests/s | server CPU s per 1M requests | p50 µs | p99 µs | p99.9 µs "
                + "| lost | wrong source | allocations per request |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label in labels {
            let s = summaries[label]!
            print(
                "| \(label) | \(s.rounds) | \(format(s.requestsPerSecond, 0)) | \(format(s.cpuPerMillion, 2)) "
                    + "| \(format(s.p50, 0)) | \(format(s.p99, 0)) | \(format(s.p999, 0)) | \(s.lost) "
                    + "| \(s.wrongSource) "
                    + "| \(s.allocationsPerRequest.map { format($0, 3) } ?? "") |"
            )
        }
        print("")
    }

    /// The ratios are medians of per-round ratios: the two sides of a ratio ran back to back, so a machine whose
    /// load drifts between rounds (a shared one) moves both alike.
    private func printTargets(
        summaries: [String: Summary],
        pairs: PairedRounds,
        control: ControlReport?,
        idle: IdleConnectionsReport?
    ) {
        print(
            "Ratios are medians over rounds of the ratio within each round; \"nginx best\" is, in each round, the "
                + "nginx configuration with the most requests/s."
        )
        print("")
        print("| target | measured | goal | verdict |")
        print("|---|---:|---:|---|")
        row(
            "udpd echo / C reference, requests/s",
            pairs.ratio("udpd-echo", "ref-echo", \.requestsPerSecond),
            goal: 0.9,
            atLeast: true
        )
        row(
            "udpd echo / C reference, CPU per request",
            pairs.ratio("udpd-echo", "ref-echo", { $0.serverCPUSecondsPerMillion }),
            goal: 1.15,
            atLeast: false
        )
        row(
            "udpd forward / nginx best, requests/s",
            pairs.ratio("udpd-forward", "nginx", \.requestsPerSecond),
            goal: 2,
            atLeast: true
        )
        row(
            "udpd forward / nginx best, CPU per request",
            pairs.ratio("udpd-forward", "nginx", { $0.serverCPUSecondsPerMillion }),
            goal: 0.5,
            atLeast: false
        )
        row(
            "udpd forward / nginx best, p99",
            pairs.ratio("udpd-forward", "nginx", \.p99Microseconds),
            goal: 1,
            atLeast: false
        )
        printFloors(pairs: pairs)
        let udpdRuns = summaries.filter { $0.key.hasPrefix("udpd") }.values
        let failures = udpdRuns.isEmpty ? nil : Double(udpdRuns.reduce(0) { $0 + $1.lost + $1.wrongSource })
        row("udpd lost + wrong-source replies", failures, goal: 0, atLeast: false, digits: 0)
        row(
            "heap allocations per echoed datagram",
            summaries["alloc-udpd-echo"]?.allocationsPerRequest,
            goal: 0,
            atLeast: false,
            digits: 3
        )
        row(
            "heap allocations per forwarded request",
            summaries["alloc-udpd-forward"]?.allocationsPerRequest,
            goal: 0,
            atLeast: false,
            digits: 3
        )
        row(
            "heap allocations per forwarded request, proxy-protocol: v2",
            summaries["alloc-udpd-forward-proxy"]?.allocationsPerRequest,
            goal: 0,
            atLeast: false,
            digits: 3
        )
        row("idle RSS, MiB", control?.idleResidentKiB.map { Double($0) / 1024 }, goal: 16, atLeast: false)
        row("1,000 services: start to ready, ms", control?.startToReadyMilliseconds, goal: 100, atLeast: false)
        row(
            "1,000 services: one-change reload, ms",
            control?.reloadOneChangeMedianMilliseconds,
            goal: 20,
            atLeast: false
        )
        row("1,000 services: status, ms", control?.statusMedianMilliseconds, goal: 5, atLeast: false)
        if let idle {
            row(
                "\(idle.connections) idle TCP connections: extra RSS, MiB",
                idle.extraMiB,
                goal: 64 * Double(idle.connections) / 10_000,
                atLeast: false,
                digits: 1
            )
        }
        if let control {
            print("")
            print(
                "Control details: `udpd --check` of 1,000 services \(format(control.checkMilliseconds, 1)) ms "
                    + "(process start included); reload max \(format(control.reloadOneChangeMaxMilliseconds, 1)) ms; "
                    + "status max \(format(control.statusMaxMilliseconds, 1)) ms (answer read, not decoded; a client's "
                    + "JSONDecoder then takes \(format(control.statusDecodeMedianMilliseconds, 1)) ms); "
                    + "RSS with 1,000 services "
                    + "\(control.residentKiBWithAllServices.map { format(Double($0) / 1024, 1) } ?? "n/a") MiB in "
                    + "\(control.threadsWithAllServices.map(String.init) ?? "n/a") threads."
            )
        }
    }

    /// Not targets: how far from the floor the forward figures are. The C reference forwarder makes the fewest
    /// system calls we know for this work, so its CPU per request is what the kernel's packet path costs here.
    private func printFloors(pairs: PairedRounds) {
        let floors: [(String, Double?)] = [
            (
                "udpd forward / C reference forwarder, CPU per request",
                pairs.ratio("udpd-forward", "ref-forward", { $0.serverCPUSecondsPerMillion })
            ),
            (
                "C reference forwarder / nginx best, CPU per request",
                pairs.ratio("ref-forward", "nginx", { $0.serverCPUSecondsPerMillion })
            ),
            (
                "C reference forwarder / nginx best, requests/s",
                pairs.ratio("ref-forward", "nginx", \.requestsPerSecond)
            ),
        ]
        for (name, value) in floors where value != nil {
            print("| \(name) | \(format(value, 2)) | (floor, not a target) | |")
        }
    }

    private func row(_ name: String, _ value: Double?, goal: Double, atLeast: Bool, digits: Int = 2) {
        let goalText = (atLeast ? "≥ " : "≤ ") + format(goal, goal == goal.rounded() ? 0 : 2)
        guard let value else {
            print("| \(name) | n/a | \(goalText) | not measured |")
            return
        }
        // Judge the figure as shown: a few allocations of the daemon's own (a status request, a timer) over
        // hundreds of thousands of datagrams print as 0.000 and must not read as "missed" against ≤ 0.
        let scale = pow(10, Double(digits))
        let shown = (value * scale).rounded() / scale
        let met = atLeast ? shown >= goal : shown <= goal
        print("| \(name) | \(format(value, digits)) | \(goalText) | \(met ? "met" : "missed") |")
    }

}

/// The load reports by label and round, for ratios between measurements taken back to back.
struct PairedRounds {
    private var byLabel: [String: [Int: LoadReport]] = [:]

    init(_ loads: [LoadReport]) {
        for load in loads { byLabel[load.label, default: [:]][load.round] = load }
    }

    /// The median over rounds of `value(numerator) / value(denominator)`. A `denominator` of `nginx` means, in
    /// each round, the nginx measurement with the most requests/s.
    func ratio(_ numerator: String, _ denominator: String, _ value: (LoadReport) -> Double?) -> Double? {
        guard let top = byLabel[numerator] else { return nil }
        var ratios: [Double] = []
        for (round, load) in top {
            guard let bottom = denominator == "nginx" ? bestNginx(round: round) : byLabel[denominator]?[round],
                let a = value(load), let b = value(bottom), b > 0
            else { continue }
            ratios.append(a / b)
        }
        return ratios.isEmpty ? nil : median(ratios)
    }

    private func bestNginx(round: Int) -> LoadReport? {
        byLabel.filter { $0.key.hasPrefix("nginx") }.compactMap { $0.value[round] }
            .max { $0.requestsPerSecond < $1.requestsPerSecond }
    }
}

/// Medians over the rounds of one measurement; losses summed.
struct Summary {
    var rounds: Int
    var requestsPerSecond: Double
    var cpuPerMillion: Double?
    var p50: Double
    var p99: Double
    var p999: Double
    var lost: UInt64
    var wrongSource: UInt64
    var allocationsPerRequest: Double?

    init(_ loads: [LoadReport]) {
        rounds = loads.count
        requestsPerSecond = median(loads.map(\.requestsPerSecond))
        let cpu = loads.compactMap(\.serverCPUSecondsPerMillion)
        cpuPerMillion = cpu.isEmpty ? nil : median(cpu)
        p50 = median(loads.map(\.p50Microseconds))
        p99 = median(loads.map(\.p99Microseconds))
        p999 = median(loads.map(\.p999Microseconds))
        lost = loads.reduce(0) { $0 + $1.lost }
        wrongSource = loads.reduce(0) { $0 + $1.wrongSource }
        let allocations = loads.compactMap(\.allocationsPerRequest)
        allocationsPerRequest = allocations.isEmpty ? nil : median(allocations)
    }
}

/// `value` with `digits` decimals; `n/a` for none.
func format(_ value: Double?, _ digits: Int) -> String {
    guard let value else { return "n/a" }
    return String(format: "%.\(digits)f", value)
}

/// What Benchmarks/tcp_idle.py prints.
struct IdleConnectionsReport: Decodable {
    var label: String
    var connections: Int
    var extraMiB: Double
    var bytesPerConnection: Int
    var openSeconds: Double

    enum CodingKeys: String, CodingKey {
        case label, connections
        case extraMiB = "extra_mib"
        case bytesPerConnection = "bytes_per_connection"
        case openSeconds = "open_seconds"
    }
}
