import ArgumentParser
import Foundation
import Synchronization
import UDPDTransport

/// `udpd-bench load`: drives one UDP server with connected sockets for a bounded time and prints one JSON object.
struct LoadCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Send request/reply load to a UDP server over connected sockets and report rate, loss and latency.",
        discussion: """
            Each client socket is bound to --source and connect()ed to --target, so a reply from any other \
            address is refused by the kernel; such replies are counted as wrong_source (and their requests as \
            lost). Every socket keeps its share of --window requests in flight. After --warmup seconds counting \
            starts; after --duration more seconds sending stops and the last replies get --timeout-ms. With \
            --pid, the server's CPU time over the measured interval is read from /proc/PID/stat.
            """
    )

    @Option(help: "The server, HOST:PORT or [V6]:PORT.")
    var target: String

    @Option(help: "The local address client sockets bind to.")
    var source = "127.0.0.1"

    @Option(help: "Load threads (each with its own sockets).")
    var threads = 1

    @Option(help: "Connected client sockets in all.")
    var sockets = 16

    @Option(help: "Requests in flight in all (spread over the sockets).")
    var window = 64

    @Option(help: "Bytes per request.")
    var payload = 64

    @Option(
        help: """
            Bytes each reply carries before the request it answers: 28 behind a forward with proxy-protocol: v2 \
            (IPv4) and a backend that echoes what it receives.
            """
    )
    var replyPrefix = 0

    @Option(help: "Seconds measured.")
    var duration = 2.0

    @Option(help: "Seconds of load before measuring.")
    var warmup = 0.5

    @Option(name: .customLong("timeout-ms"), help: "Milliseconds after which an unanswered request is lost.")
    var timeoutMilliseconds = 500

    @Option(help: "The most requests sent in all.")
    var maxRequests: UInt64 = 100_000_000

    @Option(name: .customLong("pid"), help: "A server process whose CPU time is measured (repeatable).")
    var pids: [Int32] = []

    @Flag(help: "Include the children of each --pid (nginx's workers).")
    var children = false

    @Option(help: "The counter file of malloc_count.so preloaded into the server: report allocations per request.")
    var mallocCountFile: String?

    @Option(help: "A name for this measurement, copied into the output.")
    var label = "load"

    @Option(help: "A round number, copied into the output.")
    var round = 0

    func validate() throws {
        guard threads >= 1, threads <= 16 else { throw ValidationError("--threads must be 1...16") }
        guard sockets >= threads, window >= sockets else {
            throw ValidationError("need --threads <= --sockets <= --window")
        }
        guard replyPrefix >= 0, replyPrefix <= 256 else {
            throw ValidationError("--reply-prefix must be 0...256")
        }
        guard payload >= LoadWorker.headerSize, payload <= 1400 else {
            throw ValidationError("--payload must be \(LoadWorker.headerSize)...1400")
        }
        guard duration > 0, duration <= 600, warmup >= 0, warmup <= 60 else {
            throw ValidationError("--duration must be in (0, 600] and --warmup in [0, 60]")
        }
        guard parseEndpoint(target) != nil else { throw ValidationError("--target must be HOST:PORT or [V6]:PORT") }
    }

    func run() throws {
        let targetEndpoint = parseEndpoint(target)!
        let start = monotonicNanoseconds() + 20_000_000
        let measureStart = start + UInt64(warmup * 1e9)
        let measureEnd = measureStart + UInt64(duration * 1e9)
        let results = TallyCollector()
        var threadsLeft: [Thread] = []
        let done = DispatchSemaphore(value: 0)
        for index in 0..<threads {
            let mySockets = sockets / threads + (index < sockets % threads ? 1 : 0)
            let plan = LoadPlan(
                target: targetEndpoint,
                source: source,
                sockets: mySockets,
                windowPerSocket: max(1, window / sockets),
                payload: payload,
                replyPrefix: replyPrefix,
                measureStart: measureStart,
                measureEnd: measureEnd,
                drainNanoseconds: UInt64(timeoutMilliseconds) * 1_000_000,
                requestTimeoutNanoseconds: UInt64(timeoutMilliseconds) * 1_000_000,
                maximumRequests: maxRequests / UInt64(threads)
            )
            let thread = Thread {
                do {
                    let worker = try LoadWorker(plan: plan)
                    results.add(worker.run())
                } catch {
                    results.fail("\(error)")
                }
                done.signal()
            }
            thread.name = "load-\(index)"
            thread.start()
            threadsLeft.append(thread)
        }

        sleepUntil(measureStart)
        let cpuBefore = serverCPU()
        let clientBefore = ProcessStatistics.ownCPUSeconds()
        let mallocBefore = mallocCountFile.flatMap { ProcessStatistics.mallocCount(path: $0) }
        sleepUntil(measureEnd)
        let cpuAfter = serverCPU()
        let clientAfter = ProcessStatistics.ownCPUSeconds()
        let mallocAfter = mallocCountFile.flatMap { ProcessStatistics.mallocCount(path: $0) }
        for _ in threadsLeft { done.wait() }

        let (tally, failures) = results.take()
        guard failures.isEmpty else { throw BenchmarkError(failures.joined(separator: "; ")) }
        let seconds = Double(measureEnd - measureStart) / 1e9
        var report = LoadReport(
            label: label,
            round: round,
            target: target,
            threads: threads,
            sockets: sockets,
            window: window,
            payload: payload,
            durationSeconds: seconds,
            tally: tally
        )
        if let before = cpuBefore, let after = cpuAfter {
            report.serverCPUSeconds = after - before
            report.serverCPUSecondsPerMillion =
                tally.completed > 0
                ? (after - before) / Double(tally.completed) * 1e6 : nil
        }
        report.clientCPUSecondsPerMillion =
            tally.completed > 0
            ? (clientAfter - clientBefore) / Double(tally.completed) * 1e6 : nil
        if let before = mallocBefore, let after = mallocAfter, tally.sent > 0 {
            report.allocations = after &- before
            report.allocationsPerRequest = Double(after &- before) / Double(tally.sent)
        }
        print(try report.jsonLine())
        var summary =
            "bench: round \(round) \(label): \(format(report.requestsPerSecond, 0)) req/s, "
            + "p50/p99/p99.9 \(format(report.p50Microseconds, 0))/\(format(report.p99Microseconds, 0))/"
            + "\(format(report.p999Microseconds, 0)) us, lost \(report.lost), wrong source \(report.wrongSource)"
        if let cpu = report.serverCPUSecondsPerMillion { summary += ", server \(format(cpu, 2)) CPU s per 1M" }
        if let allocations = report.allocationsPerRequest { summary += ", \(format(allocations, 3)) allocations/req" }
        FileHandle.standardError.write(Data((summary + "\n").utf8))
    }

    /// The summed CPU seconds of every `--pid`; `nil` without any or when one has exited.
    private func serverCPU() -> Double? {
        guard !pids.isEmpty else { return nil }
        var total = 0.0
        for pid in pids {
            guard let seconds = ProcessStatistics.cpuSeconds(pid: pid, includeChildren: children) else { return nil }
            total += seconds
        }
        return total
    }
}

/// Sleeps until the monotonic instant `deadline` (ns).
func sleepUntil(_ deadline: UInt64) {
    while true {
        let now = monotonicNanoseconds()
        guard now < deadline else { return }
        usleep(useconds_t(min((deadline - now) / 1000, 100_000)))
    }
}

/// Parses `127.0.0.1:7` or `[::1]:7`.
func parseEndpoint(_ text: String) -> IPEndpoint? {
    if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
        let host = String(text[text.index(after: text.startIndex)..<close])
        let rest = text[text.index(after: close)...]
        guard rest.hasPrefix(":"), let port = UInt16(rest.dropFirst()) else { return nil }
        return IPEndpoint(address: host, port: port)
    }
    guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else { return nil }
    return IPEndpoint(address: String(text[..<colon]), port: port)
}

/// The tallies of the load threads, gathered as each finishes.
///
/// `Sendable`: its state is behind a mutex.
final class TallyCollector: Sendable {
    private let state = Mutex<(LoadTally, [String])>((LoadTally(), []))

    func add(_ tally: LoadTally) { state.withLock { $0.0.merge(tally) } }
    func fail(_ message: String) { state.withLock { $0.1.append(message) } }
    func take() -> (LoadTally, [String]) { state.withLock { $0 } }
}
