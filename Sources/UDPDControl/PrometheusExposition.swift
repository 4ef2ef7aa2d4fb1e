/// Renders a ``StatusReport`` in the Prometheus text exposition format (version 0.0.4), as `udpctl metrics` prints.
///
/// Every family has its `# HELP` and `# TYPE` lines, every name matches `udpd_[a-z_]+`, and every figure that
/// belongs to a service carries a `service` label. A family may have no samples (no drops yet, say).
public enum PrometheusExposition {
    /// The whole exposition, ending with a newline.
    public static func render(_ report: StatusReport) -> String {
        var out = Writer()
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

        let services = report.services
        out.counter("udpd_received_packets_total", "Datagrams and TCP messages received.", services, \.rxPackets)
        out.counter("udpd_sent_packets_total", "Datagrams and TCP messages sent.", services, \.txPackets)
        out.counter("udpd_received_bytes_total", "Bytes received.", services, \.rxBytes)
        out.counter("udpd_sent_bytes_total", "Bytes sent.", services, \.txBytes)

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
        return out.text
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

    private enum MetricType: String {
        case counter, gauge
    }

    /// Accumulates lines; labels are written in the order given, values escaped.
    private struct Writer {
        var text = ""

        mutating func family(_ name: String, _ type: MetricType, _ help: String) {
            let escapedHelp = help.replacingBackslashesAndNewlines()
            text += "# HELP \(name) \(escapedHelp)\n# TYPE \(name) \(type.rawValue)\n"
        }

        mutating func sample(_ name: String, _ labels: KeyValuePairs<String, String>, _ value: String) {
            if labels.isEmpty {
                text += "\(name) \(value)\n"
                return
            }
            let rendered = labels.map { "\($0.key)=\"\(PrometheusExposition.escapeLabelValue($0.value))\"" }
            text += "\(name){\(rendered.joined(separator: ","))} \(value)\n"
        }

        mutating func counter(
            _ name: String,
            _ help: String,
            _ services: [ServiceStatus],
            _ figure: KeyPath<ServiceCounters, UInt64>
        ) {
            family(name, .counter, help)
            for service in services {
                sample(name, ["service": service.name], "\(service.counters[keyPath: figure])")
            }
        }
    }
}

extension String {
    /// HELP text escaping: backslash and newline.
    fileprivate func replacingBackslashesAndNewlines() -> String {
        var escaped = ""
        for character in self {
            switch character {
            case "\\": escaped += "\\\\"
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
