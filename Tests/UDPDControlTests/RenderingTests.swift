import Testing
import UDPDControl

@Suite("Rendering reports for people and Prometheus")
struct RenderingTests {
    @Test("the status table, column-aligned, with the kernel reply source flagged")
    func statusTable() {
        let expected = """
            generation:  3
            config:      /etc/udpd/services.yaml
            pid:         4242 (udpd 0.1.0)
            uptime:      3h12m (since 2026-11-26T09:00:00Z)
            last reload: never

            SERVICE  HANDLER  PROTO  ADDRESS:PORT  REPLY-SOURCE   RX   TX  RX-BYTES  TX-BYTES  DROPS  CONNS  ACTIVE
            echo     echo     udp    0.0.0.0:7     pktinfo       120  118      9600      9440      2      5       1
                              udp    [::1]:7       kernel (!)
                              tcp    0.0.0.0:7     connection
            sink     discard  udp    127.0.0.1:9   bound           7    0       700         0      0      -       -


            """ + StatusTable.kernelFootnote.joined(separator: "\n") + "\n"
        #expect(StatusTable.render(sampleReport) == expected)
    }

    @Test("a failed last reload is shouted, with its errors indented")
    func failedReloadHeader() {
        var report = sampleReport
        report.lastReload = ReloadOutcome(
            ok: false,
            at: "2026-11-26T12:00:00Z",
            errors: ["services.yaml:7:11: error: unknown handler \"ech\"", "services.yaml:9:5: error: bad port"]
        )
        report.services[0].listeners.removeSubrange(1...2)
        let lines = StatusTable.render(report).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(lines[4] == "last reload: FAILED at 2026-11-26T12:00:00Z; the previous configuration keeps running")
        #expect(lines[5] == "  services.yaml:7:11: error: unknown handler \"ech\"")
        #expect(lines[6] == "  services.yaml:9:5: error: bad port")
        #expect(!lines.contains { $0.contains("(!)") })

        report.lastReload = ReloadOutcome(ok: true, at: "2026-11-26T13:00:00Z")
        #expect(StatusTable.render(report).contains("\nlast reload: ok at 2026-11-26T13:00:00Z\n"))
    }

    @Test("a forward's upstreams follow the listeners; a down one reads DOWN, a service with none up is marked")
    func upstreamRows() {
        var report = sampleReport
        report.services = [
            ServiceStatus(
                name: "kdc",
                handler: "forward",
                listeners: [],
                counters: ServiceCounters(),
                forwardSessions: 3,
                upstreams: [
                    UpstreamStatus(address: "10.0.0.5", port: 88, state: "down", failures: 4),
                    UpstreamStatus(
                        address: "::1",
                        port: 88,
                        state: "up",
                        sessions: 3,
                        probeRoundTripMilliseconds: 1.25
                    ),
                ]
            ),
            ServiceStatus(
                name: "dns",
                handler: "forward",
                listeners: [],
                counters: ServiceCounters(),
                upstreams: [UpstreamStatus(address: "10.0.0.53", port: 53, state: "down", failures: 1)]
            ),
        ]
        let text = StatusTable.render(report)
        let expected = """

            SERVICE          UPSTREAM      STATE  SESSIONS  FAILURES  PROBE-RTT
            kdc              10.0.0.5:88   DOWN          0         4          -
                             [::1]:88      up            3         0      1.2ms
            dns (!) none up  10.0.0.53:53  DOWN          0         1          -

            """
        #expect(text.hasSuffix(expected), "\(text)")
    }

    @Test(
        "uptimes read like 3h12m",
        arguments: [(0.0, "0s"), (42.9, "42s"), (303, "5m3s"), (11_530, "3h12m"), (183_600, "2d3h")]
    )
    func durations(seconds: Double, text: String) {
        #expect(StatusTable.duration(seconds: seconds) == text)
    }

    @Test("every metric family has HELP and TYPE, and every sample belongs to a declared udpd_ family")
    func prometheusFamilies() throws {
        let text = PrometheusExposition.render(sampleReport)
        var helped = Set<String>()
        var typed = Set<String>()
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ")
            if line.hasPrefix("# HELP ") {
                helped.insert(String(words[2]))
            } else if line.hasPrefix("# TYPE ") {
                typed.insert(String(words[2]))
                #expect(["counter", "gauge"].contains(words[3]))
            } else {
                let name = String(line.prefix { $0 != "{" && $0 != " " })
                #expect(typed.contains(name), "sample before its TYPE: \(line)")
            }
        }
        #expect(helped == typed)
        for name in helped {
            #expect(name.wholeMatch(of: /udpd_[a-z_]+/) != nil, "bad name \(name)")
        }
        for required in [
            "udpd_generation", "udpd_uptime_seconds", "udpd_reloads_last_ok", "udpd_received_packets_total",
            "udpd_sent_packets_total", "udpd_received_bytes_total", "udpd_sent_bytes_total", "udpd_dropped_total",
            "udpd_tcp_connections_accepted_total", "udpd_tcp_connections_active", "udpd_listeners",
        ] {
            #expect(helped.contains(required), "missing \(required)")
        }
    }

    @Test("samples carry the service label and exact values")
    func prometheusSamples() {
        let lines = Set(PrometheusExposition.render(sampleReport).split(separator: "\n").map(String.init))
        let expected = [
            "# TYPE udpd_received_packets_total counter",
            "# TYPE udpd_tcp_connections_active gauge",
            "udpd_generation 3",
            "udpd_uptime_seconds 11530.25",
            "udpd_reloads_last_ok 1",
            "udpd_received_packets_total{service=\"echo\"} 120",
            "udpd_sent_bytes_total{service=\"sink\"} 0",
            "udpd_dropped_total{service=\"echo\",reason=\"reflection\"} 1",
            "udpd_dropped_total{service=\"echo\",reason=\"truncated\"} 1",
            "udpd_tcp_connections_active{service=\"echo\"} 1",
            "udpd_listeners{service=\"echo\",proto=\"udp\"} 2",
            "udpd_listeners{service=\"echo\",proto=\"tcp\"} 1",
        ]
        for line in expected {
            #expect(lines.contains(line), "missing: \(line)")
        }
    }

    @Test("label values are escaped; unexplained drops are reported as other")
    func prometheusEscaping() {
        #expect(PrometheusExposition.escapeLabelValue("a\"b\\c\nd") == "a\\\"b\\\\c\\nd")
        var report = sampleReport
        report.services = [
            ServiceStatus(
                name: "we\"ird\\na\nme",
                handler: "echo",
                listeners: [],
                counters: ServiceCounters(dropped: 5, drops: ["truncated": 2])
            )
        ]
        report.lastReload = ReloadOutcome(ok: false, at: "2026-11-26T12:00:00Z", errors: ["x"])
        let text = PrometheusExposition.render(report)
        #expect(text.contains("udpd_received_packets_total{service=\"we\\\"ird\\\\na\\nme\"} 0\n"))
        #expect(text.contains("udpd_dropped_total{service=\"we\\\"ird\\\\na\\nme\",reason=\"other\"} 3\n"))
        #expect(text.contains("\nudpd_reloads_last_ok 0\n"))
    }

    @Test("an applied reload lists what changed")
    func reloadApplied() {
        let report = ReloadReport(
            ok: true,
            generation: 4,
            listenersAdded: ["kdc udp 0.0.0.0:88", "kdc tcp [::]:88"],
            listenersRemoved: ["old tcp 0.0.0.0:9"],
            listenersKept: ["echo udp 0.0.0.0:7", "echo tcp 0.0.0.0:7"],
            servicesAdded: ["kdc"],
            servicesRemoved: ["old"],
            servicesChanged: ["echo"]
        )
        #expect(
            report.text == """
                reload applied: generation 4
                added service kdc
                removed service old
                changed service echo
                added listener kdc udp 0.0.0.0:88
                added listener kdc tcp [::]:88
                removed listener old tcp 0.0.0.0:9
                kept 2 listeners

                """
        )
    }

    @Test("a rejected reload prints each error on its own line")
    func reloadRejected() {
        let report = ReloadReport(
            ok: false,
            generation: 3,
            errors: ["services.yaml:7:11: error: unknown handler", "services.yaml:12:3: error: port 0"]
        )
        #expect(
            report.text == """
                reload rejected; the old configuration keeps running:
                services.yaml:7:11: error: unknown handler
                services.yaml:12:3: error: port 0

                """
        )
    }
}
