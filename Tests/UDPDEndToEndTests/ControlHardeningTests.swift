import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// Opens a bare connection to a Unix stream socket and leaves it silent.
func openSilentConnection(to path: String) throws -> SocketDescriptor {
    let fd = try systemCall("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
    _ = try withUnsafePointer(to: &address) { pointer in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            try systemCall("connect") { connect(fd, raw, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }
    return SocketDescriptor(taking: fd)
}

@Suite("The control socket serves only its owners and survives floods", .serialized)
struct ControlHardeningTests {
    /// Runs the built udpctl as uid/gid 65534 (nobody).
    func udpctlAsNobody(_ udpd: UDPDProcess) throws -> CommandResult {
        try runCommand(
            "/usr/bin/setpriv",
            [
                "--reuid=65534", "--regid=65534", "--clear-groups", BuiltProducts.path("udpctl"),
                "-s", udpd.socketPath, "status",
            ],
            timeout: 10
        )
    }

    @Test("another uid is refused by SO_PEERCRED even when the file lets it connect")
    func otherUIDIsRefused() throws {
        try #require(
            isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root and setpriv to run a client as another uid"
        )
        let udpd = try UDPDProcess(config: echoYAML([("echo", "echo", try probeFreePort())]))
        try udpd.waitUntilReady()
        // An operator mistake behind udpd's back: the directory and file opened to everyone.
        chmod(udpd.directory.path, 0o755)
        chmod(udpd.socketPath, 0o666)
        let result = try udpctlAsNobody(udpd)
        #expect(result.status != 0)
        #expect(result.standardError.contains("permission denied: uid 65534"), "\(result.standardError)")
        #expect(udpd.log.contains("control connection refused"))
        #expect(try udpd.udpctl(["status"]).status == 0, "root is still served")
        // Counted in status and metrics, not only logged.
        #expect(try udpd.status().control?.refusedPeers == 1)
        #expect(try udpd.udpctl(["metrics"]).standardOutput.contains("udpd_control_refused_peers_total 1"))
    }

    @Test("control.mode granting other write lets other uids in")
    func modeOpensTheSocket() throws {
        try #require(
            isRoot && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv"),
            "needs root and setpriv to run a client as another uid"
        )
        let port = try probeFreePort()
        let udpd = try UDPDProcess(config: "control:\n  mode: \"0666\"\n" + echoYAML([("echo", "echo", port)]))
        try udpd.waitUntilReady()
        chmod(udpd.directory.path, 0o755)
        let result = try udpctlAsNobody(udpd)
        #expect(result.status == 0, "\(result.standardError)")
        #expect(result.standardOutput.contains("echo"))
    }

    @Test("a flood of silent connections cannot keep status and reload from being answered")
    func connectionFlood() throws {
        let udpd = try UDPDProcess(config: echoYAML([("echo", "echo", try probeFreePort())]))
        try udpd.waitUntilReady()
        var silent: [SocketDescriptor] = []
        defer { silent.forEach { $0.close() } }
        for _ in 0..<200 {
            silent.append(try openSilentConnection(to: udpd.socketPath))
        }
        let clock = ContinuousClock()
        let start = clock.now
        let status = try udpd.udpctl(["status"])
        #expect(status.status == 0, "\(status.standardError)")
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardError)")
        #expect(clock.now - start < .seconds(3), "answered only after \(clock.now - start)")
        // The oldest silent connections were closed to make room.
        var byte: UInt8 = 0
        #expect(recv(silent[0].rawValue, &byte, 1, Int32(MSG_DONTWAIT)) == 0)
        // ... and counted: 200 silent ones and the two udpctl calls, at most 32 open at once.
        #expect((try udpd.status().control?.evictedConnections ?? 0) >= 200 - 32, "\(udpd.log)")
        #expect(udpd.isRunning)
    }
}
