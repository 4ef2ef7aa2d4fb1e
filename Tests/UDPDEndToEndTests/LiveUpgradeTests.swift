import Foundation
import Synchronization
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A connected UDP client asking in a loop on its own thread, one request at a time: every request must get its
/// own reply (a connected socket takes replies only from the address it asked), within `timeout`. It counts what
/// it got, what it lost, and the longest wait between two replies.
final class RequestLoop: Sendable {
    let label: String
    private let stopped = Atomic<Bool>(false)
    private let figures = Mutex<(answered: Int, lost: Int, longestPause: Duration, firstLoss: String?)>(
        (0, 0, .zero, nil)
    )
    private let finished = Atomic<Bool>(false)

    /// Starts asking `server` from `local`; at most `limit` long.
    init(
        _ label: String,
        from local: String,
        to server: IPEndpoint,
        timeout: Duration = .seconds(5),
        limit: Duration = .seconds(120)
    ) throws {
        self.label = label
        let milliseconds = Int(timeout.components.seconds * 1000)
        // The thread alone uses the client from here on.
        nonisolated(unsafe) let client = try ConnectedUDPClient(
            from: local,
            to: server,
            timeoutMilliseconds: milliseconds
        )
        let thread = Thread { [self] in
            let clock = ContinuousClock()
            let end = clock.now + limit
            var last = clock.now
            var sequence = 0
            while !stopped.load(ordering: .acquiring), clock.now < end {
                sequence += 1
                let request = "\(label) \(sequence)"
                try? client.send(request)
                // A reply to an earlier request (one that came after its timeout) is skipped, not taken for this one.
                var reply = client.receiveText()
                while let stale = reply, stale != request, stale.hasPrefix("\(label) ") {
                    reply = client.receiveText()
                }
                let now = clock.now
                figures.withLock { figures in
                    if reply == request {
                        figures.answered += 1
                        figures.longestPause = max(figures.longestPause, last.duration(to: now))
                        last = now
                    } else {
                        figures.lost += 1
                        figures.firstLoss = figures.firstLoss ?? "\(request): got \(reply ?? "nothing")"
                    }
                }
            }
            finished.store(true, ordering: .releasing)
        }
        thread.start()
    }

    /// Stops the loop and waits (bounded) for its thread.
    func stop() {
        stopped.store(true, ordering: .releasing)
        _ = eventually(timeout: .seconds(10)) { finished.load(ordering: .acquiring) }
    }

    var answered: Int { figures.withLock { $0.answered } }
    var lost: Int { figures.withLock { $0.lost } }
    var longestPause: Duration { figures.withLock { $0.longestPause } }
    var firstLoss: String? { figures.withLock { $0.firstLoss } }
}

/// Every udpd an upgrade started: killed at the end whatever happened (the first is the test's `UDPDProcess`).
final class UpgradedDaemons {
    private(set) var pids: [Int32] = []

    func add(_ pid: Int32) { pids.append(pid) }

    deinit {
        for pid in pids where kill(pid, 0) == 0 {
            kill(pid, SIGKILL)
        }
    }
}

/// How long `udpctl upgrade` took, for the report.
func timedUpgrade(_ udpd: UDPDProcess, _ arguments: [String] = []) throws -> (CommandResult, Duration) {
    let start = ContinuousClock.now
    let result = try udpd.udpctl(["upgrade"] + arguments)
    return (result, start.duration(to: .now))
}

@Suite("live upgrade: a new udpd takes over every socket, nothing lost", .serialized)
struct LiveUpgradeTests {
    @Test("5 upgrades in a row under UDP echo and forward traffic, per-address and wildcard, IPv4 and IPv6")
    func upgradesUnderLoad() throws {
        let ports = try freePorts(4)
        let (perAddress, wildcard, forward, upstreamPort) = (ports[0], ports[1], ports[2], ports[3])
        let upstream = try UDPDProcess.echoUpstream(port: upstreamPort)
        let ipv6 = hasIPv6Loopback
        let udpd = try UDPDProcess(
            config: """
                services:
                  per-address:
                    handler: echo
                    udp: \(perAddress)
                    tcp: \(perAddress)
                    bind: [127.0.0.1\(ipv6 ? ", \"::1\"" : "")]
                    workers: 2
                  wildcard:
                    handler: echo
                    udp: \(wildcard)
                    family: \(ipv6 ? "dual" : "ipv4")
                  forward:
                    handler: forward
                    udp: \(forward)
                    bind: [127.0.0.1]
                    upstream: 127.0.0.1:\(upstreamPort)
                """
        )
        let daemons = UpgradedDaemons()
        try udpd.waitUntilReady()
        // A TCP connection opened before the upgrades is served by the first udpd until it ends.
        let stream = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: perAddress)!)
        try stream.send("before\n")
        #expect(stream.receive(count: 7) == Array("before\n".utf8))

        var loops = [
            try RequestLoop("v4-address", from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: perAddress)!),
            try RequestLoop("v4-wildcard", from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: wildcard)!),
            try RequestLoop("v4-forward", from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: forward)!),
        ]
        if hasSecondLoopbackAddress {
            loops.append(
                try RequestLoop(
                    "v4-wildcard-2",
                    from: "127.0.0.2",
                    to: IPEndpoint(address: "127.0.0.2", port: wildcard)!
                )
            )
        }
        if ipv6 {
            loops.append(try RequestLoop("v6-address", from: "::1", to: IPEndpoint(address: "::1", port: perAddress)!))
            loops.append(try RequestLoop("v6-wildcard", from: "::1", to: IPEndpoint(address: "::1", port: wildcard)!))
        }
        defer { loops.forEach { $0.stop() } }
        usleep(300_000)

        var previous = udpd.pid
        for round in 1...5 {
            let (result, took) = try timedUpgrade(udpd)
            #expect(result.status == 0, "upgrade \(round): \(result.standardError)\n\(udpd.log)")
            guard let pid = Int32(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                Issue.record("upgrade \(round) printed no pid: \(result.standardOutput)")
                break
            }
            daemons.add(pid)
            let status = try udpd.status()
            #expect(status.pid == pid && status.upgradedFrom == previous, "round \(round): \(status.pid)")
            print("upgrade \(round): \(took) from udpctl upgrade to the new udpd serving")
            try stream.send("round \(round)\n")
            #expect(stream.receive(count: 8) == Array("round \(round)\n".utf8), "the old connection still works")
            previous = pid
            usleep(300_000)
        }
        usleep(300_000)
        loops.forEach { $0.stop() }
        for loop in loops {
            #expect(loop.answered > 20, "\(loop.label) answered \(loop.answered)")
            #expect(loop.lost == 0, "\(loop.label): \(loop.lost) lost, first \(loop.firstLoss ?? "-")")
            print("\(loop.label): \(loop.answered) replies, longest pause \(loop.longestPause)")
        }
        // The connection ends with the first udpd's grace period, not before.
        stream.shutdownWrite()
        #expect(stream.readsEndOfFile())
        #expect(udpd.waitForExit(timeout: .seconds(20)) == 0, "the first udpd exits cleanly after its grace")
        _ = upstream
    }

    @Test("an upgrade to a binary that exits at once leaves the old udpd serving; udpctl exits 1")
    func failedUpgradeChangesNothing() throws {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo: {handler: echo, udp: \(port), bind: [127.0.0.1]}
                """
        )
        try udpd.waitUntilReady()
        let loop = try RequestLoop("echo", from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: port)!)
        defer { loop.stop() }
        let result = try udpd.udpctl(["upgrade", "--binary", "/bin/false"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("exit status 1") && result.standardError.contains("before serving"))
        let missing = try udpd.udpctl(["upgrade", "--binary", "/nonexistent/udpd"])
        #expect(missing.status == 1 && missing.standardError.contains("No such file"), "\(missing.standardError)")
        usleep(200_000)
        loop.stop()
        #expect(loop.lost == 0 && loop.answered > 10, "\(loop.answered) answered, \(loop.lost) lost")
        let status = try udpd.status()
        #expect(status.pid == udpd.pid && status.upgradedFrom == nil)
        #expect(udpd.isRunning)

        // A configuration the new udpd refuses: its errors come back to udpctl.
        try udpd.rewriteConfig("services:\n  echo: {handler: nope, udp: \(port)}\n")
        let refused = try udpd.udpctl(["upgrade"])
        #expect(refused.status == 1 && refused.standardError.contains("nope"), "\(refused.standardError)")
        #expect(try udpd.status().pid == udpd.pid)

        let unreachable = try runCommand(BuiltProducts.path("udpctl"), ["-s", udpd.directory.file("none"), "upgrade"])
        #expect(unreachable.status == 2)
    }

    @Test(
        "an exec program running when the upgrade happens still answers, through the old udpd",
        .enabled(if: isRoot, "programs run as user: nobody, which needs root")
    )
    func programInFlightAnswers() throws {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  slow:
                    handler: exec
                    udp: \(port)
                    bind: [127.0.0.1]
                    user: nobody
                    command: [/bin/sh, -c, 'sleep 1; echo slow answer']
                """
        )
        let daemons = UpgradedDaemons()
        try udpd.waitUntilReady()
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: port)!,
            timeoutMilliseconds: 5000
        )
        try client.send("before")
        usleep(200_000)
        let result = try udpd.udpctl(["upgrade"])
        #expect(result.status == 0, "\(result.standardError) \(udpd.log)")
        if let pid = Int32(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) { daemons.add(pid) }
        #expect(client.receiveText() == "slow answer\n", "the program started by the old udpd answered")
        try client.send("after")
        #expect(client.receiveText() == "slow answer\n", "the new udpd starts programs")
        #expect(udpd.waitForExit(timeout: .seconds(20)) == 0)
    }

    @Test("a socket bound to an interface (SO_BINDTODEVICE) is adopted by its listener, not bound again")
    func interfaceSocketsAreAdopted() throws {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  on-lo: {handler: echo, udp: \(port), family: ipv4, interfaces: [lo]}
                """
        )
        let daemons = UpgradedDaemons()
        try udpd.waitUntilReady()
        let result = try udpd.udpctl(["upgrade"])
        #expect(result.status == 0, "\(result.standardError) \(udpd.log)")
        if let pid = Int32(result.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)) { daemons.add(pid) }
        #expect(udpd.log.contains("udp-0.0.0.0-\(port)-lo\" udp 0.0.0.0:\(port) on lo"), "\(udpd.log)")
        #expect(!udpd.log.contains("matches no listener"), "\(udpd.log)")
        #expect(try udpd.status().services.first?.listeners.first?.interface == "lo")
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: port)!)
        try client.send("on lo")
        #expect(client.receiveText() == "on lo")
    }

    @Test("SIGUSR2 upgrades without udpctl; the metrics endpoint moves to the new udpd on the same socket")
    func signalUpgrades() throws {
        let ports = try freePorts(2)
        let (port, metricsPort) = (ports[0], ports[1])
        let udpd = try UDPDProcess(
            config: """
                metrics: {listen: "127.0.0.1:\(metricsPort)"}
                services:
                  echo: {handler: echo, udp: \(port), bind: [127.0.0.1]}
                """
        )
        let daemons = UpgradedDaemons()
        try udpd.waitUntilReady()
        udpd.send(signal: SIGUSR2)
        var upgraded: StatusReport?
        _ = eventually(timeout: .seconds(20)) {
            upgraded = try? udpd.status()
            return upgraded.map { $0.pid != udpd.pid } ?? false
        }
        if let pid = upgraded?.pid { daemons.add(pid) }
        #expect(upgraded?.upgradedFrom == udpd.pid, "\(udpd.log)")
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: port)!)
        try client.send("after")
        #expect(client.receiveText() == "after")
        #expect(udpd.waitForExit(timeout: .seconds(20)) == 0)
        let scrape = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: metricsPort)!)
        try scrape.send("GET /metrics HTTP/1.0\r\n\r\n")
        let metrics = String(decoding: scrape.receive(count: 200), as: UTF8.self)
        #expect(metrics.contains("200 OK"), "the new udpd answers on the handed-over socket: \(metrics)")
        #expect(udpd.log.contains("metrics endpoint ready") && !udpd.log.contains("cannot open its TCP socket"))
    }
}
