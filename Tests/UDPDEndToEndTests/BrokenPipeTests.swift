import Foundation
import Testing
import UDPDControl
import UDPDTestSupport

@Suite(
    "a peer that went away never kills udpd",
    .serialized,
    .enabled(if: isRoot, "skipped: mount and network namespaces need root")
)
struct BrokenPipeTests {
    /// SIGPIPE must be ignored by udpd itself from its first moment, not from the moment SwiftNIO opens its first
    /// socket: a start that waits for a slow upstream name shows the difference (nothing of SwiftNIO has opened a
    /// socket yet).
    @Test("udpd ignores SIGPIPE from its start, and survives writing to a TCP peer that reset")
    func brokenPipesNeverKillUDPD() throws {
        let lab = try SlowResolverLab()
        let echoPort = try probeFreePort()
        let relayPort = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  echo: {handler: echo, udp: \(echoPort), tcp: \(echoPort), bind: ["127.0.0.1"]}
                  relay:
                    handler: forward
                    udp: \(relayPort)
                    bind: ["127.0.0.1"]
                    upstream: "\(SlowResolverLab.name):\(echoPort)"

                """,
            environment: lab.environment,
            launcher: lab.launcher
        )
        // While start resolves the name (2 s), read which signals udpd ignores.
        usleep(1_000_000)
        let status = try String(contentsOfFile: "/proc/\(udpd.pid)/status", encoding: .utf8)
        let ignored = status.split(separator: "\n").first { $0.hasPrefix("SigIgn:") }
            .flatMap { UInt64($0.dropFirst("SigIgn:".count).trimmingCharacters(in: .whitespaces), radix: 16) }
        #expect(
            !FileManager.default.fileExists(atPath: udpd.socketPath),
            "udpd answered before the name resolved: SigIgn was not read during its start"
        )
        #expect(
            (ignored ?? 0) & (1 << (UInt64(SIGPIPE) - 1)) != 0,
            "udpd did not ignore SIGPIPE while it started (SigIgn \(String(ignored ?? 0, radix: 16)))"
        )
        try udpd.waitUntilReady()

        // A TCP echo client sends a lot, never reads, and resets: udpd's writes then fail with EPIPE/ECONNRESET.
        let burst = """
            import socket, struct
            for _ in range(20):
                s = socket.create_connection(("127.0.0.1", \(echoPort)))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                try:
                    s.sendall(b"x" * 2000000)
                except OSError:
                    pass
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            """
        let burstResult = try runCommand(
            "/usr/bin/nsenter",
            ["-t", "\(udpd.pid)", "-n", "/usr/bin/python3", "-c", burst],
            timeout: 30
        )
        #expect(burstResult.status == 0, "\(burstResult.standardError)")
        #expect(udpd.isRunning, "udpd died writing to a closed peer:\n\(udpd.log)")
        let echoed = try lab.client(in: udpd.pid, ["tcp", "127.0.0.1", "\(echoPort)", "0"])
        #expect(echoed.status == 0, "\(echoed.standardOutput)\(echoed.standardError)\n\(udpd.log)")
        udpd.send(signal: SIGTERM)
        #expect(udpd.waitForExit() == 0, "\(udpd.log)")
    }
}
