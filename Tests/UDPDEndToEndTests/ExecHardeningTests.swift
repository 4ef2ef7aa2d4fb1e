import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("exec hardening: user, flood, crash", .serialized)
struct ExecHardeningTests {
    @Test(
        "as root, programs run as nobody/nogroup unless the service says user: root",
        .enabled(if: isRoot, "changing the program's user needs root")
    )
    func programUser() throws {
        let ports = try freePorts(3)
        let udpd = try UDPDProcess(
            config: """
                services:
                  default:
                    handler: exec
                    udp: \(ports[0])
                    tcp: \(ports[0])
                    command: [/bin/sh, -c, 'echo "$(id -u) $(id -g) $(id -G)"']
                  root:
                    handler: exec
                    udp: \(ports[1])
                    command: [/usr/bin/id, -u]
                    user: root
                  daemon:
                    handler: exec
                    udp: \(ports[2])
                    command: [/bin/sh, -c, 'echo "$(id -un) $(id -gn)"']
                    user: daemon
                    group: nogroup
                """
        )
        try udpd.waitUntilReady()
        let nobody = ProcessIdentity.unprivileged
        #expect(nobody.uid == 65_534)
        let expected = "\(nobody.uid) \(nobody.gid) \(nobody.gid)\n"
        let udp = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        try udp.send("x")
        #expect(udp.receiveText() == expected, "\(udpd.log)")
        let tcp = try TCPTestClient(to: IPEndpoint(address: "127.0.0.1", port: ports[0])!)
        #expect(String(decoding: tcp.receive(count: 100), as: UTF8.self) == expected)

        let root = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[1])!)
        try root.send("x")
        #expect(root.receiveText() == "0\n", "\(udpd.log)")

        let daemon = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[2])!)
        try daemon.send("x")
        #expect(daemon.receiveText() == "daemon nogroup\n", "\(udpd.log)")
    }

    @Test("an exec user is refused on other handlers, when unknown, and when it is the user udpd drops to")
    func userValidation() throws {
        let directory = try TemporaryDirectory()
        let port = try probeFreePort()
        let wrongHandler = try directory.write(
            "a.yaml",
            """
            services:
              echo:
                handler: echo
                udp: \(port)
                user: root
            """
        )
        var result = try runCommand(BuiltProducts.path("udpd"), ["-c", wrongHandler, "--check"])
        #expect(result.status == 1)
        #expect(
            result.standardError.contains("\(wrongHandler):5:5: error: 'user' is only valid for handler 'exec'"),
            "\(result.standardError)"
        )

        let conflict = try directory.write(
            "b.yaml",
            """
            user: nobody
            services:
              run:
                handler: exec
                udp: \(port)
                command: [/bin/true]
                user: nobody
            """
        )
        result = try runCommand(BuiltProducts.path("udpd"), ["-c", conflict, "--check"])
        #expect(result.status == 1)
        #expect(
            result.standardError.contains("\(conflict):3:3: error: service 'run' runs its program as 'nobody'"),
            "\(result.standardError)"
        )

        let ports = try freePorts(1)
        let udpd = try UDPDProcess(
            config: """
                services:
                  run:
                    handler: exec
                    udp: \(ports[0])
                    command: [/bin/true]
                    user: no-such-user-here
                """
        )
        #expect(udpd.waitForExit() != 0)
        #expect(udpd.log.contains("unknown user 'no-such-user-here'"), "\(udpd.log)")
    }

    @Test("a flood from many sources never runs more than max-instances; the rest is counted, others unaffected")
    func floodHoldsMaxInstances() throws {
        let ports = try freePorts(2)
        let directory = try TemporaryDirectory()
        let running = directory.file("running")
        let seen = directory.file("seen")
        try FileManager.default.createDirectory(atPath: running, withIntermediateDirectories: true)
        // Each instance counts the instances alive with it (its own directory included) and writes the count down.
        let script = "mkdir \(running)/$$; ls \(running) | wc -l >> \(seen); sleep 0.2; rmdir \(running)/$$; cat"
        let udpd = try UDPDProcess(
            config: """
                services:
                  run:
                    handler: exec
                    udp: \(ports[0])
                    command: [/bin/sh, -c, '\(script)']
                    max-instances: 2
                  echo:
                    handler: echo
                    udp: \(ports[1])
                """
        )
        try udpd.waitUntilReady()
        try? FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: directory.path)
        try FileManager.default.setAttributes([.posixPermissions: 0o777], ofItemAtPath: running)
        #expect(
            FileManager.default.createFile(
                atPath: seen,
                contents: nil,
                attributes: [.posixPermissions: 0o666]
            )
        )
        let residentBefore = try? residentKiB(udpd.pid)

        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let echo = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: ports[1])!)
        let sourceAddresses =
            hasSecondLoopbackAddress
            ? (1...50).map { "127.0.\($0 / 250).\($0 % 250 + 2)" }
            : Array(repeating: "127.0.0.1", count: 50)
        var sent = 0
        let deadline = ContinuousClock.now + .seconds(20)
        for round in 0..<4 where ContinuousClock.now < deadline {
            // Fresh sockets each round: every datagram comes from another address and port.
            let clients = try sourceAddresses.map { try ConnectedUDPClient(from: $0, to: server) }
            for _ in 0..<5 {
                for client in clients {
                    try client.send("flood")
                    sent += 1
                }
            }
            try echo.send("round \(round)")
            #expect(echo.receiveText() == "round \(round)", "echo starved during the flood")
        }
        let settled = try eventually(timeout: .seconds(10)) {
            let run = try udpd.counters("run")
            let started = (try? String(contentsOfFile: seen, encoding: .utf8))?.split(separator: "\n").count ?? 0
            // Loopback may drop a datagram when the socket buffer is full; each one received is accounted for.
            return run.rxPackets >= UInt64(sent * 9 / 10)
                && run.drops["instances_exceeded", default: 0] + UInt64(started) == run.rxPackets
                && (try? FileManager.default.contentsOfDirectory(atPath: running))?.isEmpty == true
        }
        let run = try udpd.counters("run")
        let counts = ((try? String(contentsOfFile: seen, encoding: .utf8)) ?? "")
            .split(separator: "\n").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        #expect(settled, "rx \(run.rxPackets) sent \(sent) drops \(run.drops) started \(counts.count)\n\(udpd.log)")
        #expect(!counts.isEmpty && counts.allSatisfy { (1...2).contains($0) }, "instances alive at once: \(counts)")
        #expect(counts.contains(2), "two instances never overlapped: \(counts)")
        #expect(run.drops["instances_exceeded", default: 0] >= UInt64(sent / 2), "\(run.drops)")

        // After the flood: the next request is served, and udpd's memory did not grow with the flood.
        let after = try ConnectedUDPClient(from: "127.0.0.1", to: server, timeoutMilliseconds: 3000)
        try after.send("after")
        #expect(after.receiveText() == "after", "\(udpd.log)")
        if let before = residentBefore, let now = try? residentKiB(udpd.pid) {
            #expect(
                now - before < 32 * 1024 * residentMemoryScale,
                "RSS grew from \(before) KiB to \(now) KiB over \(sent) datagrams"
            )
        }
    }

    @Test("a crashing program affects only its own request: counted, and the next one is served (UDP and TCP)")
    func crashingProgram() throws {
        let ports = try freePorts(1)
        let udpd = try UDPDProcess(
            config: """
                services:
                  crashy:
                    handler: exec
                    udp: \(ports[0])
                    tcp: \(ports[0])
                    command: [/bin/sh, -c, 'read -r line; case "$line" in crash*) kill -SEGV $$;; esac; echo "ok $line"']
                    max-instances: 4
                """
        )
        try udpd.waitUntilReady()
        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let crashing = try ConnectedUDPClient(from: "127.0.0.1", to: server, timeoutMilliseconds: 500)
        let healthy = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        try crashing.send("crash\n")
        try healthy.send("hello\n")
        #expect(healthy.receiveText() == "ok hello\n", "\(udpd.log)")
        #expect(crashing.receive() == nil)
        try crashing.send("again\n")
        #expect(crashing.receiveText() == "ok again\n", "\(udpd.log)")

        let crashingTCP = try TCPTestClient(to: server)
        try crashingTCP.send("crash\n")
        #expect(crashingTCP.readsEndOfFile())
        let healthyTCP = try TCPTestClient(to: server)
        try healthyTCP.send("fine\n")
        #expect(String(decoding: healthyTCP.receive(count: 100), as: UTF8.self) == "ok fine\n")

        let crashes = try eventually { try udpd.counters("crashy").drops["exec_crashed"] == 2 }
        let drops = try udpd.counters("crashy").drops
        #expect(crashes, "\(drops)")
        #expect(udpd.log.contains("killed by a signal"), "\(udpd.log)")
        #expect(udpd.isRunning)
    }
}
