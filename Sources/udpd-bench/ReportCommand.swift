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
        let decoder = JSONDecoder()
        for line in text.split(separator: "\n") where line.hasPrefix("{") {
            let data = Data(line.utf8)
            if let load = try? decoder.decode(LoadReport.self, from: data) {
                loads.append(load)
            } else if let report = try? decoder.decode(ControlReport.self, from: data) {
                control = report
            }
        }
        var labels: [String] = []
        for load in loads where !labels.contains(load.label) { labels.append(load.label) }
        let summaries = Dictionary(uniqueKeysWithValues: labels.map { label in
            (label, Summary(loads.filter { $0.label == label }))
        })
        printLoadTable(labels: labels, summaries: summaries)
        printTargets(summaries: summaries, control: control)
    }

    private func printLoadTable(labels: [String], summaries: [String: Summary]) {
        print("| measurement | rounds | requests/s | server CPU s per 1M requests | p50 µs | p99 µs | p99.9 µs "
            + "| lost | wrong source | allocations per request |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for label in labels {
            let s = summaries[label]!
            print("| \(label) | \(s.rounds) | \(format(s.requestsPerSecond, 0)) | \(format(s.cpuPerMillion, 2)) "
                + "| \(format(s.p50, 0)) | \(format(s.p99, 0)) | \(format(s.p999, 0)) | \(s.lost) | \(s.wrongSource) "
                + "| \(s.allocationsPerRequest.map { format($0, 3) } ?? "") |")
        }
        print("")
    }

    private func printTargets(summaries: [String: Summary], control: ControlReport?) {
        print("| target | measured | goal | verdict |")
        print("|---|---:|---:|---|")
        let echo = summaries["udpd-echo"]
        let reference = summaries["ref-echo"]
        row("udpd echo / C reference, requests/s", ratio(echo?.requestsPerSecond, reference?.requestsPerSecond),
            goal: 0.9, atLeast: true)
        row("udpd echo / C reference, CPU per request", ratio(echo?.cpuPerMillion, reference?.cpuPerMillion),
            goal: 1.15, atLeast: false)
        let nginx = summaries.filter { $0.key.hasPrefix("nginx") }.values.max {
            $0.requestsPerSecond < $1.requestsPerSecond
        }
        let forward = summaries["udpd-forward"]
        row("udpd forward / nginx best, requests/s", ratio(forward?.requestsPerSecond, nginx?.requestsPerSecond),
            goal: 2, atLeast: true)
        row("udpd forward / nginx best, CPU per request", ratio(forward?.cpuPerMillion, nginx?.cpuPerMillion),
            goal: 0.5, atLeast: false)
        row("udpd forward / nginx best, p99", ratio(forward?.p99, nginx?.p99), goal: 1, atLeast: false)
        let udpdRuns = summaries.filter { $0.key.hasPrefix("udpd") }.values
        let failures = udpdRuns.isEmpty ? nil : Double(udpdRuns.reduce(0) { $0 + $1.lost + $1.wrongSource })
        row("udpd lost + wrong-source replies", failures, goal: 0, atLeast: false, digits: 0)
        row("heap allocations per echoed datagram", summaries["alloc-udpd-echo"]?.allocationsPerRequest,
            goal: 0, atLeast: false, digits: 3)
        row("idle RSS, MiB", control?.idleResidentKiB.map { Double($0) / 1024 }, goal: 16, atLeast: false)
        row("1,000 services: start to ready, ms", control?.startToReadyMilliseconds, goal: 100, atLeast: false)
        row("1,000 services: one-change reload, ms", control?.reloadOneChangeMedianMilliseconds, goal: 20,
            atLeast: false)
        row("1,000 services: status, ms", control?.statusMedianMilliseconds, goal: 5, atLeast: false)
        if let control {
            print("")
            print("Control details: `udpd --check` of 1,000 services \(format(control.checkMilliseconds, 1)) ms "
                + "(process start included); reload max \(format(control.reloadOneChangeMaxMilliseconds, 1)) ms; "
                + "status max \(format(control.statusMaxMilliseconds, 1)) ms; RSS with 1,000 services "
                + "\(control.residentKiBWithAllServices.map { format(Double($0) / 1024, 1) } ?? "n/a") MiB in "
                + "\(control.threadsWithAllServices.map(String.init) ?? "n/a") threads.")
        }
    }

    private func row(_ name: String, _ value: Double?, goal: Double, atLeast: Bool, digits: Int = 2) {
        let goalText = (atLeast ? "≥ " : "≤ ") + format(goal, goal == goal.rounded() ? 0 : 2)
        guard let value else {
            print("| \(name) | n/a | \(goalText) | not measured |")
            return
        }
        let met = atLeast ? value >= goal : value <= goal
        print("| \(name) | \(format(value, digits)) | \(goalText) | \(met ? "met" : "missed") |")
    }

    private func ratio(_ numerator: Double?, _ denominator: Double?) -> Double? {
        guard let numerator, let denominator, denominator > 0 else { return nil }
        return numerator / denominator
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
