import Foundation
import Testing
import UDPDControl

/// The daemon writes its answers with a hand-written JSON writer; what it writes must read back, through the
/// `Decodable` conformances udpctl uses, as exactly what was written.
@Suite("The daemon's JSON writer")
struct WireEncodingTests {
    /// A status with every optional field, listener counters and text that needs escaping.
    static var richStatus: StatusReport {
        var report = sampleReport
        report.config = "/etc/udpd/\"odd\"\\name\n\t\u{1}é.yaml"
        report.reloads = ReloadCounts(applied: 3, rejected: 1)
        report.batchSize = 64
        report.control = ControlSocketCounts(refusedPeers: 2, evictedConnections: 5)
        report.lastReload = ReloadOutcome(ok: false, at: "2026-11-26T12:00:00Z", errors: ["f:1:2: error: \"x\""])
        report.services[0].bindFallback = true
        report.services[0].forwardSessions = 12
        report.services[0].execInstances = 0
        report.services[0].upstreams = [
            UpstreamStatus(address: "10.0.0.5", port: 88, state: "down", sessions: 0, failures: 4),
            UpstreamStatus(
                address: "2001:db8::6",
                port: 88,
                state: "up",
                sessions: 3,
                probeRoundTripMilliseconds: 1.25
            ),
        ]
        report.services[0].counters.drops = ["truncated": 2, "reflection": 7]
        report.services[0].listeners[0].interface = "eth0"
        report.services[0].listeners[0].counters = ServiceCounters(rxPackets: 5, txPackets: 4, drops: ["oversize": 1])
        report.upgradedFrom = 4141
        return report
    }

    @Test("a status response reads back unchanged, and last_reload is written even when null")
    func statusRoundTrip() throws {
        for report in [sampleReport, Self.richStatus] {
            let response = ControlResponse(ok: true, status: report)
            let line = ControlProtocol.encodeResponseLine(response)
            #expect(line.last == UInt8(ascii: "\n"))
            #expect(!line.dropLast().contains(UInt8(ascii: "\n")), "one line")
            let decoded = try ControlProtocol.decodeResponse(line.dropLast())
            #expect(decoded == response)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
            let status = try #require(object["status"] as? [String: Any])
            #expect(status.keys.contains("last_reload"))
            #expect(status.keys.contains("upgraded_from"), "written even when null")
        }
        let line = ControlProtocol.encodeResponseLine(ControlResponse(ok: true, status: Self.richStatus))
        let text = String(decoding: line, as: UTF8.self)
        #expect(text.contains(#""upstreams":[{"address":"10.0.0.5","failures":4,"port":88,"probe_rtt_ms":null,"#))
    }

    @Test("reload, metrics and error responses read back unchanged")
    func otherResponses() throws {
        let responses = [
            ControlResponse(
                ok: true,
                reload: ReloadReport(
                    ok: true,
                    generation: 2,
                    listenersAdded: ["a udp 1.2.3.4:5"],
                    listenersKept: ["b tcp [::1]:7"],
                    servicesChanged: ["b"]
                )
            ),
            ControlResponse(
                ok: false,
                error: "reload rejected",
                reload: ReloadReport(
                    ok: false,
                    generation: 1,
                    errors: ["f:1:1: error: \"no\""]
                )
            ),
            ControlResponse(ok: true, metrics: "# HELP udpd_x a \"quoted\" help\nudpd_x{service=\"e\"} 1\n"),
            ControlResponse.failure("unknown command"),
            ControlResponse(ok: true, upgrade: UpgradeReport(pid: 4242, previousPID: 4141)),
        ]
        for response in responses {
            let line = ControlProtocol.encodeResponseLine(response)
            #expect(try ControlProtocol.decodeResponse(line.dropLast()) == response)
        }
    }

    @Test("the written text is the same JSON as JSONEncoder's with sorted keys")
    func sameAsFoundation() throws {
        let response = ControlResponse(
            ok: true,
            status: Self.richStatus,
            upgrade: UpgradeReport(pid: 4242, previousPID: 4141)
        )
        let ours = try JSONSerialization.jsonObject(with: Data(ControlProtocol.encodeResponseLine(response)))
        let theirs = try JSONSerialization.jsonObject(with: Data(try ControlProtocol.encodeLine(response)))
        #expect((ours as? NSDictionary) == (theirs as? NSDictionary))
    }
}
