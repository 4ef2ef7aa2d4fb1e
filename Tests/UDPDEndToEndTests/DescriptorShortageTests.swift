import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// The CPU time (user and system) process `pid` has used so far, in seconds, from /proc/PID/stat.
private func cpuSeconds(_ pid: Int32) throws -> Double {
    let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3, utime 14.
    guard let afterName = stat.split(separator: ")").last else { throw TestFailure("unreadable stat: \(stat)") }
    let fields = afterName.split(separator: " ")
    guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else {
        throw TestFailure("unreadable stat: \(stat)")
    }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// How many descriptors process `pid` holds now.
private func openDescriptors(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? -1
}

@Suite("running out of descriptors", .serialized)
struct DescriptorShortageTests {
    @Test(
        "out of descriptors udpd counts no_descriptor, answers status and echo, starts no program, spins no core"
    )
    func shortageCostsOnlyTheRequest() throws {
        let ports = try freePorts(4)
        let (echoPort, forwardPort, execPort, upstreamPort) = (ports[0], ports[1], ports[2], ports[3])
        let upstream = try UDPDProcess.echoUpstream(port: upstreamPort)
        _ = upstream
        // 256 descriptors, soft and hard (udpd raises its soft limit to the hard one), as in `ulimit -n 256`.
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo:
                    handler: echo
                    udp: \(echoPort)
                    tcp: \(echoPort)
                    bind: [127.0.0.1]
                    workers: 1
                  relay:
                    handler: forward
                    udp: \(forwardPort)
                    bind: [127.0.0.1]
                    workers: 1
                    upstream: 127.0.0.1:\(upstreamPort)
                    timeout: 8s
                    max-sessions: 100000
                  cat:
                    handler: exec
                    udp: \(execPort)
                    bind: [127.0.0.1]
                    workers: 1
                    command: [/bin/cat]
                """,
            launcher: ["/usr/bin/prlimit", "--nofile=256:256"]
        )
        try udpd.waitUntilReady()
        let idle = openDescriptors(udpd.pid)
        #expect(idle > 0 && idle < 150, "udpd holds \(idle) descriptors at rest")

        // A flood of forward sessions, each from a port of its own: more than the limit allows.
        let relay = IPEndpoint(address: "127.0.0.1", port: forwardPort)!
        for index in 0..<600 {
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: relay)
            try client.send("session \(index)")
        }
        usleep(300_000)
        // Many idle TCP connections: each one accepted would hold a descriptor.
        let echo = IPEndpoint(address: "127.0.0.1", port: echoPort)!
        var connections: [TCPTestClient] = []
        for _ in 0..<200 {
            guard let connection = try? TCPTestClient(to: echo) else { break }
            connections.append(connection)
        }
        #expect(connections.count == 200, "the kernel queues connections udpd cannot accept")
        // A datagram for a program, which needs pipes.
        let program = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: execPort)!)
        try program.send("run me")

        // Idle flood: the connections stay open and nothing new arrives. udpd must not spin on accept. (Measured
        // before asking udpd anything, so that a udpd that cannot answer still shows whether it spins.)
        usleep(500_000)
        #expect(udpd.isRunning, "udpd survives an exec datagram without descriptors: \(udpd.log.suffix(2000))")
        let before = try cpuSeconds(udpd.pid)
        usleep(2_000_000)
        let spent = try cpuSeconds(udpd.pid) - before
        #expect(spent < 0.4, "udpd used \(spent) s of CPU in 2 s of idle flood")

        // Each shortage is counted where it happened: the sessions, the program, the connections.
        for service in ["relay", "cat", "echo"] {
            #expect(
                try eventually(timeout: .seconds(5)) {
                    try udpd.counters(service).drops["no_descriptor", default: 0] > 0
                },
                "\(service): the requests that found no descriptor are counted: \(udpd.log.suffix(2000))"
            )
        }

        // Still serving: status (over the control socket), metrics, and UDP echo.
        let status = try runCommand(BuiltProducts.path("udpctl"), ["-s", udpd.socketPath, "status", "--json"])
        #expect(status.status == 0, "udpctl status: \(status.standardError)")
        #expect(status.standardOutput.contains("\"no_descriptor\""))
        let metrics = try udpd.udpctl(["metrics"])
        #expect(metrics.status == 0, "udpctl metrics: \(metrics.standardError)")
        #expect(metrics.standardOutput.contains("udpd_dropped_total{service=\"relay\",reason=\"no_descriptor\"}"))
        let echoClient = try ConnectedUDPClient(from: "127.0.0.1", to: echo)
        try echoClient.send("still here")
        #expect(echoClient.receiveText() == "still here")
        #expect(openDescriptors(udpd.pid) <= 256)

        // Once the sessions time out and the connections go, their descriptors serve new requests again.
        connections.removeAll()
        #expect(
            try eventually(timeout: .seconds(30)) {
                let client = try ConnectedUDPClient(
                    from: "127.0.0.1",
                    to: IPEndpoint(address: "127.0.0.1", port: execPort)!,
                    timeoutMilliseconds: 500
                )
                try client.send("ran")
                return client.receiveText() == "ran"
            },
            "a program starts again once descriptors are free: \(udpd.log.suffix(2000))"
        )
        let connection = try TCPTestClient(to: echo)
        try connection.send("back")
        #expect(connection.receive(count: 4) == Array("back".utf8))
    }
}
