import Foundation
import Synchronization
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// An echo service on `port` (and optionally a second service) as YAML.
func echoYAML(_ services: [(name: String, handler: String, port: UInt16)], level: String = "info") -> String {
    var yaml = "log:\n  level: \(level)\nservices:\n"
    for service in services {
        yaml +=
            "  \(service.name):\n    handler: \(service.handler)\n    udp: \(service.port)\n    tcp: \(service.port)\n"
    }
    return yaml
}

/// Sends one datagram to 127.0.0.1:`port` from a connected socket and returns the answer, if any.
func ask(_ port: UInt16, _ text: String, timeoutMilliseconds: Int = 1000) throws -> String? {
    let client = try ConnectedUDPClient(
        from: "127.0.0.1",
        to: IPEndpoint(address: "127.0.0.1", port: port)!,
        timeoutMilliseconds: timeoutMilliseconds
    )
    try client.send(text)
    return client.receiveText()
}

@Suite("Reload: validate first, bind new sockets first, keep unchanged ones", .serialized)
struct ReloadTests {
    @Test("reload adds a service, removes one, and moves one to another port")
    func addRemoveMove() throws {
        let (a, b, c, d) = (try probeFreePort(), try probeFreePort(), try probeFreePort(), try probeFreePort())
        let udpd = try UDPDProcess(config: echoYAML([("alpha", "echo", a), ("beta", "echo", b), ("gamma", "echo", c)]))
        try udpd.waitUntilReady()
        #expect(try ask(a, "a") == "a")

        // beta removed, gamma moved from c to d, delta added on b's old port's neighbour... use b for delta later.
        try udpd.rewriteConfig(echoYAML([("alpha", "echo", a), ("gamma", "echo", d)]))
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        #expect(result.standardOutput.contains("generation 2"))
        #expect(try ask(d, "moved") == "moved")
        #expect(try ask(a, "kept") == "kept")
        #expect(isPortFree("0.0.0.0", b, proto: "udp") && isPortFree("0.0.0.0", b, proto: "tcp"), "beta's port is free")
        #expect(
            isPortFree("0.0.0.0", c, proto: "udp") && isPortFree("0.0.0.0", c, proto: "tcp"),
            "gamma's old port is free"
        )

        try udpd.rewriteConfig(echoYAML([("alpha", "echo", a), ("gamma", "echo", d), ("delta", "echo", b)]))
        #expect(try udpd.udpctl(["reload"]).status == 0)
        #expect(try ask(b, "added") == "added")
        let status = try udpd.status()
        #expect(status.generation == 3)
        #expect(status.services.map(\.name) == ["alpha", "gamma", "delta"])
        #expect(status.lastReload?.ok == true)
        // alpha's counters continued across both reloads.
        #expect(status.services.first { $0.name == "alpha" }?.counters.rxPackets == 2)
    }

    @Test("a broken file is rejected with FILE:LINE:COLUMN; the old services keep answering")
    func brokenFileIsRejected() throws {
        let a = try probeFreePort()
        let udpd = try UDPDProcess(config: echoYAML([("alpha", "echo", a)]))
        try udpd.waitUntilReady()
        try udpd.rewriteConfig("services:\n  alpha:\n    handler: echo\n    udp: 70000\n")
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 1)
        #expect(
            (result.standardOutput + result.standardError).contains("\(udpd.configPath):4:10: error:"),
            "\(result.standardOutput)\(result.standardError)"
        )
        #expect(try ask(a, "still") == "still")
        let status = try udpd.status()
        #expect(status.generation == 1)
        #expect(status.lastReload?.ok == false)
        #expect(status.lastReload?.errors.first?.hasPrefix("\(udpd.configPath):4:10: error:") == true)
    }

    @Test("a reload whose new port is held by another process is rolled back and changes nothing")
    func bindFailureRollsBack() throws {
        let (a, b, held) = (try probeFreePort(), try probeFreePort(), try probeFreePort())
        let holder = try TCPListenerSocket.bind(IPEndpoint(address: "0.0.0.0", port: held)!)
        defer { holder.close() }
        let udpd = try UDPDProcess(config: echoYAML([("alpha", "echo", a), ("beta", "echo", b)]))
        try udpd.waitUntilReady()
        // beta would move to the held port, and a new service would open b: neither may happen.
        try udpd.rewriteConfig(echoYAML([("alpha", "discard", a), ("beta", "echo", held)]))
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 1)
        #expect(
            (result.standardOutput + result.standardError).contains("service 'beta': cannot bind tcp 0.0.0.0:\(held)")
        )
        #expect(try ask(a, "alpha is still echo") == "alpha is still echo")
        #expect(try ask(b, "beta is still here") == "beta is still here")
        #expect(isPortFree("0.0.0.0", held, proto: "udp"), "the UDP socket bound for the failed reload was closed")
        #expect(try udpd.status().generation == 1)
    }

    @Test("SIGHUP reloads exactly like udpctl reload")
    func sighupReloads() throws {
        let (a, b) = (try probeFreePort(), try probeFreePort())
        let udpd = try UDPDProcess(config: echoYAML([("alpha", "echo", a)]))
        try udpd.waitUntilReady()
        try udpd.rewriteConfig(echoYAML([("alpha", "echo", a), ("beta", "echo", b)]))
        udpd.send(signal: SIGHUP)
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline, try udpd.status().generation < 2 { usleep(20_000) }
        #expect(try udpd.status().generation == 2)
        #expect(try ask(b, "hup") == "hup")
        try udpd.rewriteConfig("services: [")
        udpd.send(signal: SIGHUP)
        while ContinuousClock.now < deadline, try udpd.status().lastReload?.ok != false { usleep(20_000) }
        #expect(try udpd.status().lastReload?.ok == false)
        #expect(udpd.isRunning)
        #expect(try ask(a, "alive") == "alive")
    }

    @Test("a changed handler applies in place on the same socket; an unchanged reload changes nothing")
    func handlerChangesInPlace() throws {
        let a = try probeFreePort()
        let udpd = try UDPDProcess(config: echoYAML([("alpha", "echo", a)]))
        try udpd.waitUntilReady()
        #expect(try udpd.udpctl(["reload"]).status == 0)
        #expect(try ask(a, "same") == "same")
        try udpd.rewriteConfig(echoYAML([("alpha", "discard", a)]))
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 0)
        #expect(result.standardOutput.contains("alpha"))
        #expect(try ask(a, "gone", timeoutMilliseconds: 300) == nil)
        let status = try udpd.status()
        #expect(status.services.first?.handler == "discard")
        #expect(status.services.first?.counters.rxPackets == 2)
    }

    @Test("workers: a port served by several threads is one status entry; a reload changes the count")
    func workersChange() throws {
        let a = try probeFreePort()
        let config = { (workers: Int) in
            "services:\n  multi:\n    handler: echo\n    udp: \(a)\n    family: ipv4\n    workers: \(workers)\n"
        }
        let udpd = try UDPDProcess(config: config(3))
        let status = try udpd.waitUntilReady()
        #expect(status.services.first?.listeners.count == 1)
        #expect(udpd.log.contains("workers=3"))
        for index in 0..<20 { #expect(try ask(a, "n\(index)") == "n\(index)") }
        try udpd.rewriteConfig(config(1))
        let result = try udpd.udpctl(["reload"])
        #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
        #expect(udpd.log.contains("workers=1"))
        #expect(try ask(a, "after") == "after")
        let counted = try udpd.status().services.first?.counters.rxPackets
        #expect(counted == 21, "rx_packets \(String(describing: counted)); log:\n\(udpd.log)")
    }

    @Test("batch-size: status reports it, and a reload changes it while the same socket keeps answering")
    func batchSizeChange() throws {
        let a = try probeFreePort()
        let config = { (batch: String) in "\(batch)services:\n  e: {handler: echo, udp: \(a), family: ipv4}\n" }
        let udpd = try UDPDProcess(config: config(""))
        #expect(try udpd.waitUntilReady().batchSize == 32)
        #expect(try ask(a, "before") == "before")
        for size in [1, 256] {
            try udpd.rewriteConfig(config("batch-size: \(size)\n"))
            let result = try udpd.udpctl(["reload"])
            #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
            #expect(try udpd.status().batchSize == size)
            for index in 0..<10 { #expect(try ask(a, "\(size) \(index)") == "\(size) \(index)") }
        }
        let result = try udpd.udpctl(["status", "--json"])
        #expect(result.standardOutput.contains("\"batch_size\" : 256"), "\(result.standardOutput.prefix(200))")
        #expect(try udpd.counters("e").rxPackets == 21)
    }

    @Test("a TCP listener moved away and back rebinds its port despite TIME_WAIT and draining connections")
    func tcpPortComesBackDespiteTimeWaitAndDrains() throws {
        let ports = try freePorts(2)
        let config = { (port: UInt16) in
            "services:\n  e: {handler: echo, tcp: \(port), bind: [127.0.0.1], idle-timeout: 300ms}\n"
        }
        let udpd = try UDPDProcess(config: config(ports[0]))
        try udpd.waitUntilReady()
        let home = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        // Closed by udpd after idle-timeout: TIME_WAIT stays on udpd's side of port 0's connections.
        let closed = try (0..<20).map { _ in try TCPTestClient(to: home) }
        for client in closed { try client.send("x") }
        #expect(closed.allSatisfy { $0.receive(count: 1) == Array("x".utf8) })
        #expect(eventually { closed.allSatisfy { $0.readsEndOfFile() } }, "idle-timeout did not close them")
        // Still open while the listener moves away and back: they drain in the grace period.
        let draining = try (0..<5).map { _ in try TCPTestClient(to: home) }
        for target in [ports[1], ports[0]] {
            try udpd.rewriteConfig(config(target))
            let result = try udpd.udpctl(["reload"])
            #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)\n\(udpd.log)")
        }
        let client = try TCPTestClient(to: home)
        try client.send("back")
        #expect(client.receive(count: 4) == Array("back".utf8))
        _ = draining
    }

    @Test("zero loss: a steady stream to an unchanged service while 50 reloads alternate two configurations")
    func zeroLossDuringReloads() throws {
        let (a, b) = (try probeFreePort(), try probeFreePort())
        let first = echoYAML([("steady", "echo", a)])
        let second = echoYAML([("steady", "echo", a), ("other", "discard", b)])
        let udpd = try UDPDProcess(config: first)
        try udpd.waitUntilReady()
        // The stream runs on a thread of its own, not on Swift's cooperative pool, so that it keeps sending while
        // this test blocks on udpctl; the reloads start only once it is flowing.
        let traffic = TrafficThread(port: a, minimum: 20_000, maximum: 400_000, window: 32)
        #expect(eventually(timeout: .seconds(20)) { traffic.progress >= 1_000 }, "the stream did not start")
        var applied = 0
        for round in 0..<50 {
            try udpd.rewriteConfig(round % 2 == 0 ? second : first)
            if try udpd.udpctl(["reload"]).status == 0 { applied += 1 }
        }
        let sentBeforeEnd = traffic.progress
        let result = try traffic.finish()
        #expect(applied == 50)
        #expect(result.sent >= 20_000)
        #expect(result.lost == 0, "\(result.lost) of \(result.sent) datagrams lost")
        #expect(result.answered == result.sent)
        #expect(sentBeforeEnd >= 1_000, "the stream overlapped the reloads")
        let steady = try #require(try udpd.status().services.first { $0.name == "steady" })
        #expect(steady.counters.dropped == 0)
        #expect(steady.counters.rxPackets == UInt64(result.sent))
    }
}

/// A steady stream of datagrams on its own thread: started at init, told to wind down by ``finish()``.
final class TrafficThread: Sendable {
    private let done = DoneFlag()
    private let sent = Atomic<Int>(0)
    private let outcome = Mutex<Result<TrafficResult, any Error>?>(nil)

    init(port: UInt16, minimum: Int, maximum: Int, window: Int) {
        Thread { [self] in run(port: port, minimum: minimum, maximum: maximum, window: window) }.start()
    }

    private func run(port: UInt16, minimum: Int, maximum: Int, window: Int) {
        let result = Result {
            try steadyTraffic(
                port: port,
                minimum: minimum,
                maximum: maximum,
                window: window,
                until: done,
                progress: sent
            )
        }
        outcome.withLock { $0 = result }
    }

    /// Datagrams sent so far.
    var progress: Int { sent.load(ordering: .relaxed) }

    /// Lets the stream end (after its minimum) and waits at most two minutes for its result.
    func finish() throws -> TrafficResult {
        done.set()
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            if let result = outcome.withLock({ $0 }) { return try result.get() }
            usleep(10_000)
        }
        throw TestFailure("the traffic thread did not finish")
    }
}

/// Set once, read from another thread.
final class DoneFlag: Sendable {
    private let done = Atomic<Bool>(false)
    func set() { done.store(true, ordering: .releasing) }
    var isSet: Bool { done.load(ordering: .acquiring) }
}

/// What a steady stream saw.
struct TrafficResult: Sendable {
    var sent = 0
    var answered = 0
    var lost = 0
}

/// Sends numbered datagrams from one connected socket with at most `window` unanswered, until `until` is set and at
/// least `minimum` were sent (never more than `maximum`, never longer than 120 seconds), and counts the answers. A
/// datagram unanswered within 2 seconds is lost.
func steadyTraffic(
    port: UInt16,
    minimum: Int,
    maximum: Int,
    window: Int,
    until done: DoneFlag,
    progress: borrowing Atomic<Int>
) throws -> TrafficResult {
    let client = try ConnectedUDPClient(
        from: "127.0.0.1",
        to: IPEndpoint(address: "127.0.0.1", port: port)!,
        timeoutMilliseconds: 2000
    )
    var result = TrafficResult()
    let deadline = ContinuousClock.now + .seconds(120)
    while ContinuousClock.now < deadline {
        let finished = done.isSet && result.sent >= minimum
        if !finished && result.sent < maximum {
            while result.sent < maximum && result.sent - result.answered - result.lost < window {
                try client.send("\(result.sent)")
                result.sent += 1
                progress.store(result.sent, ordering: .relaxed)
            }
        }
        let outstanding = result.sent - result.answered - result.lost
        if outstanding == 0 {
            if finished || result.sent >= maximum { break }
            continue
        }
        if client.receive(maximum: 64) != nil { result.answered += 1 } else { result.lost += outstanding }
    }
    return result
}
