/// Renders a ``StatusReport`` in the Prometheus text exposition format (version 0.0.4), as `udpctl metrics` prints
/// and the HTTP `/metrics` endpoint serves.
///
/// Every family has its `# HELP` and `# TYPE` lines, every name matches `udpd_[a-z_]+`, and every figure that
/// belongs to a service carries a `service` label. A family may have no samples (no drops yet, say).
///
/// The figures come from a status snapshot rather than from a metrics library: the datapath already keeps exact
/// atomic counters per listener, so rendering them on demand costs the datapath nothing and keeps no second copy
/// of any counter, and a service or listener that a reload removes disappears from the next scrape by itself.
///
/// Two views of the same traffic, under different names so that no `sum()` counts anything twice:
/// `udpd_*{service}` are a service's totals (including listeners a reload has removed, so they never go
/// backwards), `udpd_listener_*{service,proto,address,port}` belong to each listener serving now.
public enum PrometheusExposition {
    /// The content type of the exposition, for an HTTP response.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The whole exposition, ending with a newline.
    public static func render(_ report: StatusReport) -> String {
        var out = PrometheusWriter()
        renderDaemon(report, into: &out)
        renderServices(report.services, into: &out)
        renderListeners(report.services, into: &out)
        renderUpstreams(report.services, into: &out)
        return out.text
    }

    /// The daemon's own figures: build, generation, uptime and reloads.
    private static func renderDaemon(_ report: StatusReport, into out: inout PrometheusWriter) {
        out.family("udpd_build_info", .gauge, "The running udpd's build; always 1.")
        out.sample("udpd_build_info", ["version": report.version, "os": operatingSystem], "1")
        out.family("udpd_info", .gauge, "The running udpd's version; always 1.")
        out.sample("udpd_info", ["version": report.version], "1")
        out.family("udpd_generation", .gauge, "Configurations applied since udpd started, starting at 1.")
        out.sample("udpd_generation", [:], "\(report.generation)")
        out.family("udpd_uptime_seconds", .gauge, "Seconds since udpd started.")
        out.sample("udpd_uptime_seconds", [:], number(report.uptimeSeconds))
        out.family(
            "udpd_reloads_last_ok",
            .gauge,
            "1 if the latest reload was applied or none happened yet, 0 if it was rejected."
        )
        out.sample("udpd_reloads_last_ok", [:], report.lastReload?.ok == false ? "0" : "1")
        out.family("udpd_reloads_total", .counter, "Reloads (SIGHUP or udpctl reload), by result.")
        if let reloads = report.reloads {
            out.sample("udpd_reloads_total", ["result": "applied"], "\(reloads.applied)")
            out.sample("udpd_reloads_total", ["result": "rejected"], "\(reloads.rejected)")
        }
        out.family(
            "udpd_control_refused_peers_total",
            .counter,
            "Control socket connections refused: the peer's uid may not use the socket."
        )
        if let control = report.control {
            out.sample("udpd_control_refused_peers_total", [:], "\(control.refusedPeers)")
        }
        out.family(
            "udpd_control_connections_evicted_total",
            .counter,
            "Control socket connections closed, oldest first, to make room at the cap of open connections."
        )
        if let control = report.control {
            out.sample("udpd_control_connections_evicted_total", [:], "\(control.evictedConnections)")
        }
    }

    /// Each service's totals over its listeners, past and present.
    private static func renderServices(_ services: [ServiceStatus], into out: inout PrometheusWriter) {
        out.counter("udpd_received_packets_total", "Datagrams received.", services, \.rxPackets)
        out.counter("udpd_sent_packets_total", "Datagrams sent.", services, \.txPackets)
        out.counter("udpd_received_bytes_total", "Bytes received (UDP payloads, TCP stream).", services, \.rxBytes)
        out.counter("udpd_sent_bytes_total", "Bytes sent (UDP payloads, TCP stream).", services, \.txBytes)

        out.family("udpd_dropped_total", .counter, "Datagrams and messages dropped, by reason.")
        for service in services {
            for (reason, count) in dropsByReason(service.counters) {
                out.sample("udpd_dropped_total", ["service": service.name, "reason": reason], "\(count)")
            }
        }

        out.counter("udpd_tcp_connections_accepted_total", "TCP connections accepted.", services, \.tcpAccepted)
        out.counter("udpd_tcp_connections_closed_total", "TCP connections closed.", services, \.tcpClosed)
        out.family("udpd_tcp_connections_active", .gauge, "TCP connections open now.")
        for service in services {
            out.sample("udpd_tcp_connections_active", ["service": service.name], "\(service.counters.tcpActive)")
        }

        out.family("udpd_forward_sessions", .gauge, "UDP sessions a forward service keeps open now.")
        for service in services {
            guard let sessions = service.forwardSessions else { continue }
            out.sample("udpd_forward_sessions", ["service": service.name], "\(sessions)")
        }
        out.family("udpd_exec_instances", .gauge, "Programs an exec service runs now.")
        for service in services {
            guard let instances = service.execInstances else { continue }
            out.sample("udpd_exec_instances", ["service": service.name], "\(instances)")
        }

        out.family("udpd_listeners", .gauge, "Listening (protocol, address, port) entries, by protocol.")
        for service in services {
            for proto in ["udp", "tcp"] {
                let count = service.listeners.filter { $0.proto == proto }.count
                out.sample("udpd_listeners", ["service": service.name, "proto": proto], "\(count)")
            }
        }
        out.family(
            "udpd_listeners_kernel_reply_source",
            .gauge,
            "UDP listeners whose replies' source address the kernel picks (wrong on multi-homed hosts)."
        )
        for service in services {
            let count = service.listeners.filter(\.replySourceIsUnreliable).count
            out.sample("udpd_listeners_kernel_reply_source", ["service": service.name], "\(count)")
        }
    }

    /// Each listener serving now, labelled with its service, protocol, address and port.
    private static func renderListeners(_ services: [ServiceStatus], into out: inout PrometheusWriter) {
        let listeners = services.flatMap { service in service.listeners.map { (service.name, $0) } }
        out.family(
            "udpd_listener_reply_source",
            .gauge,
            "How a listener's replies leave from the right address (pktinfo, recvdstaddr, bound, kernel, connection)."
        )
        for (service, listener) in listeners {
            out.sample(
                "udpd_listener_reply_source",
                labels(service, listener) + [("reply_source", listener.replySource)],
                "1"
            )
        }
        let traffic: [(String, String, KeyPath<ServiceCounters, UInt64>)] = [
            ("udpd_listener_received_packets_total", "Datagrams a listener received.", \.rxPackets),
            ("udpd_listener_sent_packets_total", "Datagrams a listener sent.", \.txPackets),
            ("udpd_listener_received_bytes_total", "Bytes a listener received (UDP payloads, TCP stream).", \.rxBytes),
            ("udpd_listener_sent_bytes_total", "Bytes a listener sent (UDP payloads, TCP stream).", \.txBytes),
        ]
        for (name, help, figure) in traffic {
            out.family(name, .counter, help)
            for (service, listener) in listeners {
                out.sample(name, labels(service, listener), "\(figures(of: listener)[keyPath: figure])")
            }
        }
        out.family("udpd_listener_dropped_total", .counter, "Datagrams and messages a listener dropped, by reason.")
        for (service, listener) in listeners {
            for (reason, count) in dropsByReason(figures(of: listener)) {
                out.sample("udpd_listener_dropped_total", labels(service, listener) + [("reason", reason)], "\(count)")
            }
        }
        let tcp = listeners.filter { $0.1.proto == "tcp" }
        let connectionFigures: [(String, MetricType, String, KeyPath<ServiceCounters, UInt64>)] = [
            (
                "udpd_listener_tcp_connections_accepted_total", .counter, "TCP connections a listener accepted.",
                \.tcpAccepted
            ),
            ("udpd_listener_tcp_connections_active", .gauge, "TCP connections of a listener open now.", \.tcpActive),
            (
                "udpd_listener_tcp_connections_closed_total", .counter, "TCP connections of a listener closed.",
                \.tcpClosed
            ),
        ]
        for (name, type, help, figure) in connectionFigures {
            out.family(name, type, help)
            for (service, listener) in tcp {
                out.sample(name, labels(service, listener), "\(figures(of: listener)[keyPath: figure])")
            }
        }
    }

    /// Each forward service's upstreams, labelled `upstream="ADDRESS:PORT"`.
    private static func renderUpstreams(_ services: [ServiceStatus], into out: inout PrometheusWriter) {
        let upstreams = services.flatMap { service in (service.upstreams ?? []).map { (service.name, $0) } }
        out.family("udpd_upstream_up", .gauge, "1 if new requests may go to a forward's upstream, 0 if it is down.")
        for (service, upstream) in upstreams {
            out.sample(
                "udpd_upstream_up",
                ["service": service, "upstream": upstream.endpoint],
                upstream.isUp ? "1" : "0"
            )
        }
        out.family(
            "udpd_upstream_failures_total",
            .counter,
            "Hard failures traffic saw at a forward's upstream (ICMP errors, failed TCP connects) and failed probes."
        )
        for (service, upstream) in upstreams {
            out.sample(
                "udpd_upstream_failures_total",
                ["service": service, "upstream": upstream.endpoint],
                "\(upstream.failures)"
            )
        }
        out.family("udpd_upstream_sessions", .gauge, "UDP sessions and TCP relays open to a forward's upstream now.")
        for (service, upstream) in upstreams {
            out.sample(
                "udpd_upstream_sessions",
                ["service": service, "upstream": upstream.endpoint],
                "\(upstream.sessions)"
            )
        }
        out.family(
            "udpd_upstream_probe_rtt_seconds",
            .gauge,
            "The round trip of the last answered health probe of a forward's upstream."
        )
        for (service, upstream) in upstreams {
            guard let milliseconds = upstream.probeRoundTripMilliseconds else { continue }
            out.sample(
                "udpd_upstream_probe_rtt_seconds",
                ["service": service, "upstream": upstream.endpoint],
                number(milliseconds / 1000)
            )
        }
    }

    /// A listener's counters; zero from a daemon that reports only services' totals.
    private static func figures(of listener: ListenerStatus) -> ServiceCounters {
        listener.counters ?? ServiceCounters()
    }

    /// `service`, `proto`, `address`, `port`, in that order.
    private static func labels(_ service: String, _ listener: ListenerStatus) -> [(String, String)] {
        [("service", service), ("proto", listener.proto), ("address", listener.address), ("port", "\(listener.port)")]
    }

    /// Escapes a label value: backslash, double quote and newline.
    public static func escapeLabelValue(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }

    /// Drops by reason, sorted; drops no reason accounts for are reported as `other`.
    private static func dropsByReason(_ counters: ServiceCounters) -> [(String, UInt64)] {
        var reasons = counters.drops.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        let explained = counters.drops.values.reduce(0, &+)
        if counters.dropped > explained {
            reasons.append(("other", counters.dropped - explained))
        }
        return reasons
    }

    private static func number(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        return "\(value)"
    }

    /// The operating system udpd was built for, for `udpd_build_info`.
    private static var operatingSystem: String {
        #if os(Linux)
        "linux"
        #elseif os(macOS)
        "macos"
        #elseif os(FreeBSD)
        "freebsd"
        #elseif os(OpenBSD)
        "openbsd"
        #else
        "unknown"
        #endif
    }
}
