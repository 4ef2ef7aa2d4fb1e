import Testing
import UDPDControl

import enum UDPDTestSupport.PrometheusText

/// ``sampleReport`` with per-listener counters, reload counts, and the forward/exec gauges of a later handler.
private var detailedReport: StatusReport {
    var report = sampleReport
    report.reloads = ReloadCounts(applied: 2, rejected: 1)
    report.services[0].listeners[0].counters = ServiceCounters(
        rxPackets: 100,
        txPackets: 99,
        rxBytes: 8000,
        txBytes: 7920,
        dropped: 1,
        drops: ["reflection": 1]
    )
    report.services[0].listeners[2].counters = ServiceCounters(
        rxPackets: 20,
        txPackets: 19,
        rxBytes: 1600,
        txBytes: 1520,
        tcpAccepted: 5,
        tcpActive: 1,
        tcpClosed: 4
    )
    report.services.append(
        ServiceStatus(name: "kdc", handler: "forward", listeners: [], counters: ServiceCounters(), forwardSessions: 3)
    )
    report.services[report.services.count - 1].upstreams = [
        UpstreamStatus(address: "10.0.0.5", port: 88, state: "down", sessions: 0, failures: 4),
        UpstreamStatus(address: "2001:db8::6", port: 88, state: "up", sessions: 3, probeRoundTripMilliseconds: 1.5),
    ]
    return report
}

@Suite("The Prometheus exposition parses strictly and carries every figure")
struct PrometheusExpositionTests {
    @Test("the exposition passes the strict checker, and every family is udpd_ with HELP and TYPE")
    func parsesStrictly() throws {
        let exposition = try PrometheusText.parse(PrometheusExposition.render(detailedReport))
        #expect(Set(exposition.help.keys) == Set(exposition.types.keys))
        for name in exposition.types.keys {
            #expect(name.wholeMatch(of: /udpd_[a-z_]+/) != nil, "bad name \(name)")
        }
        for sample in exposition.samples where sample.name != "udpd_build_info" && sample.name != "udpd_info" {
            if sample.labels["port"] != nil || sample.name.hasPrefix("udpd_listener_") {
                #expect(Set(["service", "proto", "address", "port"]).isSubset(of: sample.labels.keys), "\(sample)")
            }
        }
    }

    @Test("each upstream of a forward has its state, failures, sessions and probe round trip")
    func upstreamSeries() throws {
        let exposition = try PrometheusText.parse(PrometheusExposition.render(detailedReport))
        let first = ["service": "kdc", "upstream": "10.0.0.5:88"]
        let second = ["service": "kdc", "upstream": "[2001:db8::6]:88"]
        #expect(exposition.value("udpd_upstream_up", first) == 0)
        #expect(exposition.value("udpd_upstream_up", second) == 1)
        #expect(exposition.value("udpd_upstream_failures_total", first) == 4)
        #expect(exposition.value("udpd_upstream_sessions", second) == 3)
        #expect(exposition.value("udpd_upstream_probe_rtt_seconds", second) == 0.0015)
        #expect(exposition.samples("udpd_upstream_probe_rtt_seconds", first).isEmpty)
    }

    @Test("per-listener series carry service, proto, address and port with their own values")
    func listenerSeries() throws {
        let exposition = try PrometheusText.parse(PrometheusExposition.render(detailedReport))
        let udp = ["service": "echo", "proto": "udp", "address": "0.0.0.0", "port": "7"]
        let tcp = ["service": "echo", "proto": "tcp", "address": "0.0.0.0", "port": "7"]
        #expect(exposition.value("udpd_listener_received_packets_total", udp) == 100)
        #expect(exposition.value("udpd_listener_sent_bytes_total", udp) == 7920)
        #expect(exposition.value("udpd_listener_received_bytes_total", tcp) == 1600)
        #expect(
            exposition.value("udpd_listener_dropped_total", udp.merging(["reason": "reflection"]) { a, _ in a })
                == 1
        )
        #expect(exposition.value("udpd_listener_tcp_connections_accepted_total", tcp) == 5)
        #expect(exposition.value("udpd_listener_tcp_connections_active", tcp) == 1)
        #expect(exposition.value("udpd_listener_tcp_connections_closed_total", tcp) == 4)
        #expect(exposition.samples("udpd_listener_tcp_connections_accepted_total", ["proto": "udp"]).isEmpty)
        #expect(
            exposition.value("udpd_listener_reply_source", udp.merging(["reply_source": "pktinfo"]) { a, _ in a })
                == 1
        )
        // A listener without counters (an older daemon) still has its series, at zero.
        let v6 = ["service": "echo", "proto": "udp", "address": "::1", "port": "7"]
        #expect(exposition.value("udpd_listener_received_packets_total", v6) == 0)
    }

    @Test("daemon figures: build info, generation, reloads by result, forward sessions only where reported")
    func daemonFigures() throws {
        let exposition = try PrometheusText.parse(PrometheusExposition.render(detailedReport))
        #expect(exposition.value("udpd_build_info", ["version": "0.1.0", "os": "linux"]) == 1)
        #expect(exposition.value("udpd_generation") == 3)
        #expect(exposition.value("udpd_reloads_total", ["result": "applied"]) == 2)
        #expect(exposition.value("udpd_reloads_total", ["result": "rejected"]) == 1)
        #expect(exposition.value("udpd_forward_sessions", ["service": "kdc"]) == 3)
        #expect(exposition.samples("udpd_forward_sessions").count == 1)
        #expect(exposition.types["udpd_exec_instances"] == "gauge")
        #expect(exposition.samples("udpd_exec_instances").isEmpty)
    }

    @Test("a service that is no longer reported has no series at all")
    func removedServiceVanishes() throws {
        var report = detailedReport
        report.services.removeAll { $0.name == "sink" }
        let exposition = try PrometheusText.parse(PrometheusExposition.render(report))
        #expect(!exposition.samples.contains { $0.labels["service"] == "sink" })
        #expect(exposition.samples.contains { $0.labels["service"] == "echo" })
    }

    @Test(
        "the checker refuses what a scraper would",
        arguments: [
            "# TYPE a_total counter\na_total 1\na_total 2\n",  // duplicate series
            "a 1\n",  // no TYPE
            "# TYPE a gauge\na{x=\"\\t\"} 1\n",  // bad escape
            "# TYPE a counter\na 1\n",  // counter without _total
            "# TYPE a gauge\na one\n",  // not a float
            "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",  // label twice
            "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n",  // family split
            "# TYPE a gauge\na 1",  // no final newline
            "# TYPE a gauge\n\na 1\n",  // blank line
        ]
    )
    func checkerRefuses(text: String) {
        #expect(throws: (any Error).self) { try PrometheusText.parse(text) }
    }
}
