import Foundation
import Testing
import UDPDControl
import UDPDTestSupport

/// A stop that arrives while reloads run or wait: the reload under way completes, every queued `udpctl reload`
/// gets an answer, nothing starts after the stop began, and udpd exits 0.
@Suite("stop and reload are ordered", .serialized)
struct StopDuringReloadTests {
    @Test("SIGTERM while a large reload runs and more are queued: every udpctl reload is answered, exit 0")
    func stopWhileReloadsAreQueued() throws {
        let count = 400
        // Outside the ephemeral range, where the client sockets of tests running meanwhile take their ports.
        var ports: Set<UInt16> = []
        while ports.count < 2 * count {
            let port = UInt16.random(in: 10_000..<32_000)
            if isPortFree("127.0.0.1", port, proto: "udp") { ports.insert(port) }
        }
        let before = Array(ports.prefix(count))
        let after = Array(ports.dropFirst(count))
        func config(_ ports: [UInt16]) -> String {
            "services:\n"
                + ports.enumerated().map { index, port in
                    "  s\(index): {handler: echo, udp: \(port), bind: [\"127.0.0.1\"], workers: 1}\n"
                }.joined()
        }
        let udpd = try UDPDProcess(config: config(before))
        try udpd.waitUntilReady(timeout: .seconds(60))
        try udpd.rewriteConfig(config(after))

        let requests = 5
        let reloads = try (0..<requests).map { _ in
            try BackgroundCommand([BuiltProducts.path("udpctl"), "-s", udpd.socketPath, "reload"])
        }
        let queued = eventually(timeout: .seconds(10)) {
            udpd.log.components(separatedBy: "reload requested over the control socket uid=").count - 1 >= requests
        }
        #expect(queued, "the reloads never reached udpd:\n\(udpd.log)")
        udpd.send(signal: SIGTERM)
        let exit = udpd.waitForExit(timeout: .seconds(30))
        #expect(exit == 0, "udpd exited with \(String(describing: exit)):\n\(udpd.log)")

        let log = udpd.log.split(separator: "\n").filter { !$0.contains("listen") }.joined(separator: "\n")
        for (index, reload) in reloads.enumerated() {
            let result = reload.wait(timeout: .seconds(10))
            let said = result.standardOutput + result.standardError
            // Applied, rejected because udpd is stopping (or because a port was taken meanwhile): an answer.
            #expect(
                (result.status == 0 && said.contains("reload applied"))
                    || (result.status == 1 && said.contains("reload rejected")),
                "udpctl reload \(index) got no answer (exit \(result.status)): \(said)\n\(log)"
            )
        }
        // The reload under way may complete, but before the listeners stop; nothing starts after that.
        let fullLog = udpd.log
        if let stop = fullLog.range(of: "stopping every listener") {
            let afterStop = fullLog[stop.upperBound...]
            #expect(!afterStop.contains("listening"), "a listener started after the stop:\n\(afterStop)")
            #expect(!afterStop.contains("reload applied"), "a reload was applied after the stop:\n\(afterStop)")
            #expect(!afterStop.contains("reload requested"), "a reload was accepted after the stop:\n\(afterStop)")
        } else {
            Issue.record("no 'stopping every listener' in the log:\n\(fullLog)")
        }
        #expect(!fullLog.contains("SWIFT TASK CONTINUATION MISUSE"), "\(log)")
        // No udpd thread lingers with a socket: the process is gone (other tests may bind these ports meanwhile,
        // so the ports themselves are not probed).
        #expect(kill(udpd.pid, 0) != 0)
    }
}
