import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

@Suite("udpctl and the control socket, against the real binaries", .serialized)
struct ControlSocketTests {
    @Test("status --json carries every field of INTERFACE.md")
    func statusJSON() throws {
        let a = try probeFreePort()
        let udpd = try UDPDProcess(config: echoYAML([("echo", "echo", a)]))
        try udpd.waitUntilReady()
        #expect(try ask(a, "x") == "x")
        #expect(try eventually { try udpd.status().services.first?.counters.txBytes == 1 })
        let result = try udpd.udpctl(["status", "--json"])
        #expect(result.status == 0)
        let json = try #require(
            try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any]
        )
        #expect(json["generation"] as? Int == 1)
        #expect(json["config"] as? String == udpd.configPath)
        #expect(json.keys.contains("last_reload") && json["last_reload"] is NSNull)
        let services = try #require(json["services"] as? [[String: Any]])
        let echo = try #require(services.first)
        #expect(echo["name"] as? String == "echo")
        #expect(echo["handler"] as? String == "echo")
        let listeners = try #require(echo["listeners"] as? [[String: Any]])
        #expect(
            listeners.contains {
                $0["proto"] as? String == "udp" && $0["address"] as? String == "0.0.0.0" && $0["port"] as? Int == Int(a)
                    && $0["reply_source"] as? String == "pktinfo"
            }
        )
        #expect(listeners.contains { $0["proto"] as? String == "tcp" && $0["reply_source"] as? String == "connection" })
        // Each listener carries its own counters too; the IPv4 UDP one received the datagram.
        let udp4 = try #require(
            listeners.first { $0["proto"] as? String == "udp" && $0["address"] as? String == "0.0.0.0" }
        )
        #expect((udp4["counters"] as? [String: Any])?["rx_packets"] as? Int == 1)
        let counters = try #require(echo["counters"] as? [String: Any])
        for key in ["rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "dropped", "tcp_accepted", "tcp_active"] {
            #expect(counters[key] is Int, "counter \(key)")
        }
        #expect(counters["rx_packets"] as? Int == 1)
        #expect(counters["tx_bytes"] as? Int == 1)
    }

    @Test("status prints a table a person can read")
    func statusTable() throws {
        let a = try probeFreePort()
        let udpd = try UDPDProcess(config: echoYAML([("echo", "echo", a)]))
        try udpd.waitUntilReady()
        let result = try udpd.udpctl(["status"])
        #expect(result.status == 0)
        let text = result.standardOutput
        #expect(text.contains("generation"))
        #expect(text.contains("SERVICE"))
        #expect(text.contains("0.0.0.0:\(a)"))
        #expect(text.contains("pktinfo"))
        #expect(text.contains("never"), "the last reload is 'never' before the first one:\n\(text)")
    }

    @Test("metrics prints Prometheus text with the service label")
    func metrics() throws {
        let a = try probeFreePort()
        let udpd = try UDPDProcess(config: echoYAML([("echo", "echo", a)]))
        try udpd.waitUntilReady()
        #expect(try ask(a, "m") == "m")
        let result = try udpd.udpctl(["metrics"])
        #expect(result.status == 0)
        #expect(result.standardOutput.contains("# TYPE udpd_generation gauge"))
        #expect(result.standardOutput.contains("service=\"echo\""))
    }

    @Test("udpctl without a daemon exits 2 and names the socket it tried")
    func noDaemon() throws {
        let directory = try TemporaryDirectory()
        let socket = directory.file("nobody.sock")
        for command in [["status"], ["reload"], ["metrics"]] {
            let result = try runCommand(BuiltProducts.path("udpctl"), ["-s", socket] + command)
            #expect(result.status == 2)
            #expect(result.standardError.contains(socket))
        }
    }

    @Test("a stale socket file is replaced; a live daemon on the socket makes a second udpd exit 1")
    func staleAndLiveSockets() throws {
        let (a, b) = (try probeFreePort(), try probeFreePort())
        let first = try UDPDProcess(config: echoYAML([("one", "echo", a)]))
        try first.waitUntilReady()
        // Kill it hard: the socket file stays behind.
        first.send(signal: SIGKILL)
        _ = first.waitForExit()
        #expect(FileManager.default.fileExists(atPath: first.socketPath))
        let second = try UDPDProcess(config: echoYAML([("two", "echo", b)]), socketPath: first.socketPath)
        try second.waitUntilReady()
        // Now a third udpd pointed at the live socket of the second must refuse.
        let c = try probeFreePort()
        let third = try runCommand(
            BuiltProducts.path("udpd"),
            [
                "-c", try second.directory.write("third.yaml", echoYAML([("three", "echo", c)])),
                "--control-socket", second.socketPath,
            ],
            timeout: 20
        )
        #expect(third.status == 1)
        #expect(third.standardError.contains(second.socketPath))
        #expect(try second.status().services.first?.name == "two")
        #expect(isPortFree("0.0.0.0", c, proto: "udp"), "the refused udpd released its listeners")
    }

    @Test("sd_notify: READY=1, then RELOADING=1 with MONOTONIC_USEC and READY=1, then STOPPING=1")
    func systemdNotify() throws {
        let directory = try TemporaryDirectory()
        let notifyPath = directory.file("notify.sock")
        let listener = try UnixDatagramListener(path: notifyPath)
        let a = try probeFreePort()
        let udpd = try UDPDProcess(config: echoYAML([("echo", "echo", a)]), environment: ["NOTIFY_SOCKET": notifyPath])
        try udpd.waitUntilReady()
        #expect(listener.receive()?.hasPrefix("READY=1") == true)
        #expect(try udpd.udpctl(["reload"]).status == 0)
        let reloading = listener.receive() ?? ""
        #expect(reloading.hasPrefix("RELOADING=1"))
        #expect(reloading.contains("MONOTONIC_USEC="))
        #expect(listener.receive()?.hasPrefix("READY=1") == true)
        udpd.send(signal: SIGTERM)
        #expect(listener.receive()?.hasPrefix("STOPPING=1") == true)
        #expect(udpd.waitForExit() == 0)
    }
}
