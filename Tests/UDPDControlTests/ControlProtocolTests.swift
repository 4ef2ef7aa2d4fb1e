import Foundation
import Testing
import UDPDControl

@Suite("The control protocol's JSON")
struct ControlProtocolTests {
    @Test("a request is one line with the version and the command")
    func requestLine() throws {
        let line = try ControlProtocol.encodeLine(ControlRequest(command: .reload))
        #expect(String(decoding: line, as: UTF8.self) == "{\"command\":\"reload\",\"version\":1}\n")
    }

    @Test("status uses the INTERFACE.md keys, last_reload null until the first reload")
    func statusKeys() throws {
        let data = try JSONEncoder().encode(sampleReport)
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(object["last_reload"] is NSNull)
        for key in ["generation", "config", "pid", "version", "started_at", "uptime_seconds", "services"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        let service = try #require((object["services"] as? [[String: Any]])?.first)
        let listener = try #require((service["listeners"] as? [[String: Any]])?.first)
        #expect(listener["port"] as? Int == 7)
        #expect(listener["reply_source"] as? String == "pktinfo")
        let counters = try #require(service["counters"] as? [String: Any])
        let expected = [
            "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "dropped", "tcp_accepted", "tcp_active",
            "tcp_closed", "drops",
        ]
        #expect(Set(counters.keys) == Set(expected))
    }

    @Test("a failed reload outcome round-trips")
    func reloadOutcome() throws {
        var report = sampleReport
        report.lastReload = ReloadOutcome(ok: false, at: "2026-11-26T12:00:00Z", errors: ["f.yaml:7:11: error: x"])
        let line = try ControlProtocol.encodeLine(ControlResponse(ok: true, status: report))
        #expect(line.last == UInt8(ascii: "\n"))
        let decoded = try ControlProtocol.decodeResponse(line.dropLast())
        #expect(decoded.status == report)
    }

    @Test("reload reports use snake_case keys")
    func reloadKeys() throws {
        let report = ReloadReport(ok: true, generation: 2, listenersAdded: ["echo udp 127.0.0.1:7"])
        let text = String(decoding: try ControlProtocol.encodeLine(report), as: UTF8.self)
        #expect(text.contains("\"listeners_added\":[\"echo udp 127.0.0.1:7\"]"))
        #expect(text.contains("\"services_changed\":[]"))
    }

    @Test(
        "malformed requests are told apart",
        arguments: [
            ("{", ControlProtocolError.Code.invalidJSON),
            ("[1,2]", .invalidJSON),
            ("{\"version\":\"one\",\"command\":\"status\"}", .invalidJSON),
            ("{\"command\":\"status\"}", .unsupportedVersion),
            ("{\"version\":7,\"command\":\"status\"}", .unsupportedVersion),
            ("{\"version\":1}", .unknownCommand),
            ("{\"version\":1,\"command\":\"shutdown\"}", .unknownCommand),
        ]
    )
    func malformedRequests(line: String, code: ControlProtocolError.Code) {
        #expect {
            _ = try ControlProtocol.decodeRequest(Array(line.utf8))
        } throws: { error in
            (error as? ControlProtocolError)?.code == code
        }
    }

    @Test("a valid request decodes")
    func validRequest() throws {
        let request = try ControlProtocol.decodeRequest(Array("{\"version\":1,\"command\":\"metrics\"}".utf8))
        #expect(request == ControlRequest(command: .metrics))
        let upgrade = try ControlProtocol.decodeRequest(
            Array("{\"version\":1,\"command\":\"upgrade\",\"binary\":\"/usr/sbin/udpd\"}".utf8)
        )
        #expect(upgrade == ControlRequest(command: .upgrade, binary: "/usr/sbin/udpd"))
        // What an older udpctl sends still decodes, without a binary; and the binary goes out only when set.
        let bare = try ControlProtocol.decodeRequest(Array("{\"version\":1,\"command\":\"upgrade\"}".utf8))
        #expect(bare.binary == nil)
        let status = try ControlProtocol.encodeLine(ControlRequest(command: .status))
        #expect(!String(decoding: status, as: UTF8.self).contains("binary"))
    }
}
