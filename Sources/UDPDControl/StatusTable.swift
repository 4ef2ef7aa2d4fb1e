import UDPDConfig

/// Renders a ``StatusReport`` as the table `udpctl status` prints: a few header lines, then one row per listener.
///
/// A service's counters stand on its first row only, so a glance down the RX column adds up per service. RX and TX
/// count datagrams; RX-BYTES and TX-BYTES count UDP payloads and TCP stream bytes alike, so that a TCP-only service
/// shows its traffic too; CONNS counts TCP connections accepted and ACTIVE those open now. A
/// listener whose replies' source address is left to the kernel is marked ` (!)` and explained in a footnote,
/// because on a multi-homed host its replies may leave from the wrong address.
///
/// Every text from the daemon (the config path, names, interfaces, errors) is escaped (``TextEscaping``) so that a
/// control character in it can neither add a line nor drive the terminal.
public enum StatusTable {
    /// The column titles.
    public static let columns = [
        "SERVICE", "HANDLER", "PROTO", "ADDRESS:PORT", "REPLY-SOURCE", "RX", "TX", "RX-BYTES", "TX-BYTES", "DROPS",
        "CONNS", "ACTIVE",
    ]
    /// The columns holding figures, right-aligned: every one after the first five.
    private static let figureColumns = Set(5..<columns.count)
    /// The marker appended to a `kernel` reply source.
    public static let unreliableMarker = " (!)"

    /// The footnote explaining ``unreliableMarker``.
    public static let kernelFootnote = [
        "(!) kernel: a wildcard socket without IP_PKTINFO/IP_RECVDSTADDR; the kernel picks the source address of",
        "    its replies, which on a multi-homed host may not be the address the request was sent to.",
    ]

    /// The whole text, ending with a newline.
    public static func render(_ report: StatusReport) -> String {
        var lines = header(report)
        lines.append("")
        var rows = [columns]
        var anyUnreliable = false
        for service in report.services {
            rows.append(contentsOf: self.rows(for: service))
            anyUnreliable = anyUnreliable || service.listeners.contains(where: \.replySourceIsUnreliable)
        }
        if report.services.isEmpty {
            lines.append("no services configured")
        } else {
            lines.append(contentsOf: align(rows, rightAligned: figureColumns))
        }
        if anyUnreliable {
            lines.append("")
            lines.append(contentsOf: kernelFootnote)
        }
        lines.append(contentsOf: upstreamLines(report.services))
        let fallbacks = report.services.filter { $0.bindFallback == true }.map { escaped($0.name) }
        if !fallbacks.isEmpty {
            lines.append("")
            lines.append(
                "bind fallback: \(fallbacks.joined(separator: ", ")): no pktinfo on wildcard sockets here, so "
                    + "UDP is served per address"
            )
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The column titles of the upstreams table, under the services.
    public static let upstreamColumns = ["SERVICE", "UPSTREAM", "STATE", "SESSIONS", "FAILURES", "PROBE-RTT"]

    /// The upstreams of forward services, one row each, after a blank line; a down upstream reads `DOWN`, in
    /// capitals, and the service's row is marked `(!)` when none of its upstreams is up.
    private static func upstreamLines(_ services: [ServiceStatus]) -> [String] {
        var rows = [upstreamColumns]
        for service in services {
            guard let upstreams = service.upstreams else { continue }
            let noneUp = !upstreams.contains(where: \.isUp)
            for (index, upstream) in upstreams.enumerated() {
                let name = index == 0 ? escaped(service.name) + (noneUp ? " (!) none up" : "") : ""
                let roundTrip = upstream.probeRoundTripMilliseconds.map { milliseconds in
                    let tenths = Int(min(max(milliseconds, 0), 1e9) * 10)
                    return "\(tenths / 10).\(tenths % 10)ms"
                }
                rows.append([
                    name, escaped(upstream.endpoint), upstream.isUp ? escaped(upstream.state) : "DOWN",
                    "\(upstream.sessions)", "\(upstream.failures)", roundTrip ?? "-",
                ])
            }
        }
        guard rows.count > 1 else { return [] }
        return [""] + align(rows, rightAligned: [3, 4, 5])
    }

    /// `3h12m`-style text for a number of seconds: the two largest units, or seconds alone under a minute.
    public static func duration(seconds: Double) -> String {
        guard seconds.isFinite, seconds > 0 else { return "0s" }
        let total = Int(seconds)
        let days = total / 86_400
        let hours = total % 86_400 / 3600
        let minutes = total % 3600 / 60
        let secs = total % 60
        if days > 0 { return "\(days)d\(hours)h" }
        if hours > 0 { return "\(hours)h\(minutes)m" }
        if minutes > 0 { return "\(minutes)m\(secs)s" }
        return "\(secs)s"
    }

    private static func header(_ report: StatusReport) -> [String] {
        var lines = [
            "generation:  \(report.generation)",
            "config:      \(escaped(report.config))",
            "pid:         \(report.pid) (udpd \(escaped(report.version)))"
                + (report.upgradedFrom.map { ", upgraded from pid \($0)" } ?? ""),
            "uptime:      \(duration(seconds: report.uptimeSeconds)) (since \(escaped(report.startedAt)))",
        ]
        switch report.lastReload {
        case nil:
            lines.append("last reload: never")
        case let outcome? where outcome.ok:
            lines.append("last reload: ok at \(escaped(outcome.at))")
        case let outcome?:
            lines.append("last reload: FAILED at \(escaped(outcome.at)); the previous configuration keeps running")
            lines.append(contentsOf: outcome.errors.map { "  \(escaped($0))" })
        }
        return lines
    }

    private static func rows(for service: ServiceStatus) -> [[String]] {
        let counters = service.counters
        let hasTCP = service.listeners.contains { $0.proto == "tcp" }
        let figures = [
            "\(counters.rxPackets)", "\(counters.txPackets)", "\(counters.rxBytes)", "\(counters.txBytes)",
            "\(counters.dropped)", hasTCP ? "\(counters.tcpAccepted)" : "-", hasTCP ? "\(counters.tcpActive)" : "-",
        ]
        let blank = [String](repeating: "", count: figures.count)
        guard !service.listeners.isEmpty else {
            return [[escaped(service.name), escaped(service.handler), "-", "-", "-"] + figures]
        }
        return service.listeners.enumerated().map { index, listener in
            let replySource =
                escaped(listener.replySource) + (listener.replySourceIsUnreliable ? unreliableMarker : "")
            let first = index == 0
            let identity = first ? [escaped(service.name), escaped(service.handler)] : ["", ""]
            let endpoint = escaped(
                listener.endpoint + (listener.dualStack == true ? " +IPv4" : "")
                    + (listener.interface.map { " on \($0)" } ?? "")
            )
            return identity + [escaped(listener.proto), endpoint, replySource] + (first ? figures : blank)
        }
    }

    /// One line of text from the daemon, fit for a terminal.
    private static func escaped(_ text: String) -> String { TextEscaping.escaped(text) }

    /// Pads every column to its widest cell, two spaces apart, without trailing blanks.
    private static func align(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        let count = rows.map(\.count).max() ?? 0
        let widths = (0..<count).map { column in
            rows.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0
        }
        return rows.map { row in
            var line = ""
            for (column, cell) in row.enumerated() {
                let padding = String(repeating: " ", count: widths[column] - cell.count)
                if column > 0 { line += "  " }
                line += rightAligned.contains(column) ? padding + cell : cell + padding
            }
            while line.hasSuffix(" ") { line.removeLast() }
            return line
        }
    }
}
