import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A port below 1024 that is free for UDP and TCP now, probed in 900..<1000.
func probeFreePrivilegedPort() -> UInt16? {
    (900..<1000).map(UInt16.init).first { port in
        isPortFree("0.0.0.0", port, proto: "udp") && isPortFree("0.0.0.0", port, proto: "tcp")
            && isPortFree("::", port, proto: "udp") && isPortFree("::", port, proto: "tcp")
    }
}

/// The `Key:` line of a /proc status file, split into fields.
func procStatusField(_ path: String, _ key: String) throws -> [String] {
    let text = try String(contentsOfFile: path, encoding: .utf8)
    guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else {
        throw TestFailure("no \(key) in \(path)")
    }
    return line.dropFirst(key.count + 1).split(whereSeparator: { $0 == "\t" || $0 == " " }).map(String.init)
}

@Suite("udpd drops to user/group after binding and keeps only CAP_NET_BIND_SERVICE", .serialized)
struct PrivilegeTests {
    @Test("user: nobody: every thread runs as nobody; only the binder thread can bind low ports; reload binds one")
    func dropToNobody() throws {
        try #require(isRoot, "needs root to drop privileges")
        let port = try probeFreePort()
        let privileged = try #require(probeFreePrivilegedPort(), "no free port in 900..<1000")
        let base = "user: nobody\nlog:\n  level: debug\nservices:\n  echo:\n    handler: echo\n    udp: \(port)\n"
        let udpd = try UDPDProcess(config: base)
        chmod(udpd.directory.path, 0o755)
        chmod(udpd.configPath, 0o644)
        try udpd.waitUntilReady()
        #expect(udpd.log.contains("dropped privileges"))
        let nobody = "65534"
        #expect(try procStatusField("/proc/\(udpd.pid)/status", "Uid") == [nobody, nobody, nobody, nobody])
        #expect(try procStatusField("/proc/\(udpd.pid)/status", "Groups") == [nobody])
        // Every thread: no capability except on the binder, which has exactly CAP_NET_BIND_SERVICE (bit 10).
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(udpd.pid)/task")
        var binders = 0
        for task in tasks {
            let path = "/proc/\(udpd.pid)/task/\(task)/status"
            guard let name = try? procStatusField(path, "Name").first else { continue }
            let effective = try procStatusField(path, "CapEff").first
            let permitted = try procStatusField(path, "CapPrm").first
            if name == "udpd-binder" {
                binders += 1
                #expect(
                    effective == "0000000000000400" && permitted == "0000000000000400",
                    "binder: \(effective ?? "?")"
                )
            } else {
                #expect(
                    effective == "0000000000000000" && permitted == "0000000000000000",
                    "\(name) keeps capabilities"
                )
            }
        }
        #expect(binders == 1)
        #expect(try ask(port, "as nobody") == "as nobody")

        try udpd.rewriteConfig(base + "  low:\n    handler: echo\n    udp: \(privileged)\n")
        chmod(udpd.configPath, 0o644)
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)\n\(udpd.log)")
        #expect(try ask(privileged, "low port") == "low port")
    }

    @Test("an unknown user is an error before anything is bound")
    func unknownUser() throws {
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: "user: no-such-user-here\nservices:\n  e:\n    handler: echo\n    udp: \(port)\n"
        )
        #expect(udpd.waitForExit() == 1)
        #expect(udpd.log.contains("unknown user 'no-such-user-here'"))
    }
}
