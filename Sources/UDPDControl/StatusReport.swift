/// The daemon's state, as `udpctl status --json` prints it (the fields of `INTERFACE.md`, plus a few more).
public struct StatusReport: Codable, Sendable, Equatable {
    /// How many configurations have been applied, starting at 1.
    public var generation: Int
    /// The configuration file's path.
    public var config: String
    /// The daemon's process id.
    public var pid: Int32
    /// The daemon's version.
    public var version: String
    /// When the daemon started, ISO 8601 in UTC (`2026-11-26T12:00:00Z`).
    public var startedAt: String
    /// Seconds since the daemon started.
    public var uptimeSeconds: Double
    /// The outcome of the latest reload; `nil` (JSON `null`, never omitted) until the first reload.
    public var lastReload: ReloadOutcome?
    /// The services, in configuration order.
    public var services: [ServiceStatus]
    /// Reloads applied and rejected since the daemon started; `nil` from a daemon that does not count them.
    public var reloads: ReloadCounts?
    /// Datagrams each UDP worker thread takes per recvmmsg and answers per sendmmsg (`batch-size`); `nil` from a
    /// daemon that does not report it.
    public var batchSize: Int?
    /// The control socket's own figures; `nil` from a daemon that does not report them.
    public var control: ControlSocketCounts?
    /// The pid of the udpd this one took over from by an upgrade; `nil` (JSON `null`) when it was started otherwise.
    public var upgradedFrom: Int32?

    /// Creates a report.
    public init(
        generation: Int,
        config: String,
        pid: Int32,
        version: String,
        startedAt: String,
        uptimeSeconds: Double,
        lastReload: ReloadOutcome?,
        services: [ServiceStatus],
        reloads: ReloadCounts? = nil,
        batchSize: Int? = nil,
        control: ControlSocketCounts? = nil
    ) {
        self.generation = generation
        self.config = config
        self.pid = pid
        self.version = version
        self.startedAt = startedAt
        self.uptimeSeconds = uptimeSeconds
        self.lastReload = lastReload
        self.services = services
        self.reloads = reloads
        self.batchSize = batchSize
        self.control = control
    }

    enum CodingKeys: String, CodingKey {
        case generation
        case config
        case pid
        case version
        case startedAt = "started_at"
        case uptimeSeconds = "uptime_seconds"
        case lastReload = "last_reload"
        case services
        case reloads
        case batchSize = "batch_size"
        case control
        case upgradedFrom = "upgraded_from"
    }

    /// Encodes every field; `last_reload` is written as `null` rather than left out, as `INTERFACE.md` requires.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(generation, forKey: .generation)
        try container.encode(config, forKey: .config)
        try container.encode(pid, forKey: .pid)
        try container.encode(version, forKey: .version)
        try container.encode(startedAt, forKey: .startedAt)
        try container.encode(uptimeSeconds, forKey: .uptimeSeconds)
        try container.encode(lastReload, forKey: .lastReload)
        try container.encode(services, forKey: .services)
        try container.encodeIfPresent(reloads, forKey: .reloads)
        try container.encodeIfPresent(batchSize, forKey: .batchSize)
        try container.encodeIfPresent(control, forKey: .control)
        try container.encode(upgradedFrom, forKey: .upgradedFrom)
    }
}

/// How many reloads (SIGHUP or `udpctl reload`) were applied and how many rejected since the daemon started.
public struct ReloadCounts: Codable, Sendable, Equatable {
    /// Reloads whose configuration was applied.
    public var applied: UInt64
    /// Reloads whose configuration was refused; the previous one kept running.
    public var rejected: UInt64

    /// Creates counts.
    public init(applied: UInt64 = 0, rejected: UInt64 = 0) {
        self.applied = applied
        self.rejected = rejected
    }

    enum CodingKeys: String, CodingKey {
        case applied
        case rejected
    }
}

/// What the control socket refused: connections from peers that may not use it, and connections closed to make
/// room under its cap (``ControlServer/maximumConnections``).
public struct ControlSocketCounts: Codable, Sendable, Equatable {
    /// Connections refused because the peer's uid may not use the socket.
    public var refusedPeers: UInt64
    /// Connections closed, oldest first, to make room for a new one at the cap.
    public var evictedConnections: UInt64

    /// Creates counts.
    public init(refusedPeers: UInt64 = 0, evictedConnections: UInt64 = 0) {
        self.refusedPeers = refusedPeers
        self.evictedConnections = evictedConnections
    }

    enum CodingKeys: String, CodingKey {
        case refusedPeers = "refused_peers"
        case evictedConnections = "evicted_connections"
    }
}

/// How the latest reload went.
public struct ReloadOutcome: Codable, Sendable, Equatable {
    /// Whether the new configuration was applied.
    public var ok: Bool
    /// When the reload happened, ISO 8601 in UTC.
    public var at: String
    /// Why it was rejected, one `FILE:LINE:COLUMN: error: MESSAGE` line each; empty when it was applied.
    public var errors: [String]

    /// Creates an outcome.
    public init(ok: Bool, at: String, errors: [String] = []) {
        self.ok = ok
        self.at = at
        self.errors = errors
    }

    enum CodingKeys: String, CodingKey {
        case ok
        case at
        case errors
    }
}

/// One service: its handler, its listeners and its counters.
public struct ServiceStatus: Codable, Sendable, Equatable {
    /// The service's name from the configuration.
    public var name: String
    /// The handler's name (`echo`, `discard`, `forward`, `exec`).
    public var handler: String
    /// One entry per (protocol, address, port), however many workers serve it.
    public var listeners: [ListenerStatus]
    /// The service's counters, summed over its listeners.
    public var counters: ServiceCounters
    /// `true` when the service asks for the wildcard address but its UDP ports are served per address, because
    /// wildcard sockets cannot learn destination addresses on this host (no pktinfo); absent otherwise.
    public var bindFallback: Bool?
    /// UDP sessions a `forward` service keeps open now; `nil` for other handlers (left out of the JSON).
    public var forwardSessions: UInt64?
    /// Programs an `exec` service runs now; `nil` for other handlers (left out of the JSON).
    public var execInstances: UInt64?
    /// A `forward` service's upstreams, in order of preference; `nil` for other handlers (left out of the JSON).
    public var upstreams: [UpstreamStatus]?

    /// Creates a service's status.
    public init(
        name: String,
        handler: String,
        listeners: [ListenerStatus],
        counters: ServiceCounters,
        bindFallback: Bool? = nil,
        forwardSessions: UInt64? = nil,
        execInstances: UInt64? = nil,
        upstreams: [UpstreamStatus]? = nil
    ) {
        self.name = name
        self.handler = handler
        self.listeners = listeners
        self.counters = counters
        self.bindFallback = bindFallback
        self.forwardSessions = forwardSessions
        self.execInstances = execInstances
        self.upstreams = upstreams
    }

    enum CodingKeys: String, CodingKey {
        case name
        case handler
        case listeners
        case counters
        case bindFallback = "bind_fallback"
        case forwardSessions = "forward_sessions"
        case execInstances = "exec_instances"
        case upstreams
    }
}

/// One upstream of a `forward` service: where it is, whether new sessions may go there, and what udpd saw of it.
public struct UpstreamStatus: Codable, Sendable, Equatable {
    /// The upstream's address, without brackets (a host name is shown as the address it resolved to).
    public var address: String
    /// The upstream's port.
    public var port: Int
    /// `up` or `down`.
    public var state: String
    /// UDP sessions and TCP relays open to it now.
    public var sessions: UInt64
    /// Hard failures traffic saw (ICMP errors, refused or timed-out TCP connects) and failed probes.
    public var failures: UInt64
    /// The last good probe's round trip in milliseconds; `null` without probes or before the first answer.
    public var probeRoundTripMilliseconds: Double?

    /// Creates an upstream's status.
    public init(
        address: String,
        port: Int,
        state: String,
        sessions: UInt64 = 0,
        failures: UInt64 = 0,
        probeRoundTripMilliseconds: Double? = nil
    ) {
        self.address = address
        self.port = port
        self.state = state
        self.sessions = sessions
        self.failures = failures
        self.probeRoundTripMilliseconds = probeRoundTripMilliseconds
    }

    /// Whether new sessions may go there.
    public var isUp: Bool { state == "up" }

    /// `address:port`, with an IPv6 address in brackets.
    public var endpoint: String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    enum CodingKeys: String, CodingKey {
        case address
        case port
        case state
        case sessions
        case failures
        case probeRoundTripMilliseconds = "probe_rtt_ms"
    }

    /// As synthesized, except that a missing probe round trip is written as `null` rather than left out: the field
    /// is always there, for scripts that read it.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(address, forKey: .address)
        try container.encode(port, forKey: .port)
        try container.encode(state, forKey: .state)
        try container.encode(sessions, forKey: .sessions)
        try container.encode(failures, forKey: .failures)
        try container.encode(probeRoundTripMilliseconds, forKey: .probeRoundTripMilliseconds)
    }
}

/// One listening socket (or one group of workers on the same protocol, address and port).
public struct ListenerStatus: Codable, Sendable, Equatable {
    /// `udp` or `tcp`.
    public var proto: String
    /// The local address, without brackets (`0.0.0.0`, `::`, `fe80::1%eth0`).
    public var address: String
    /// The local port.
    public var port: Int
    /// How replies leave from the right address: `pktinfo`, `recvdstaddr`, `bound`, `kernel` or `connection`.
    public var replySource: String
    /// The interface a wildcard socket is bound to (`interfaces:` with the wildcard); absent otherwise.
    public var interface: String?
    /// `true` for an IPv6 wildcard socket that serves IPv4 too (an adopted dual-stack socket, systemd's
    /// `BindIPv6Only=both`); absent otherwise.
    public var dualStack: Bool?
    /// This listener's own counters (a service's `counters` add up its listeners, past and present).
    public var counters: ServiceCounters?

    /// Creates a listener's status.
    public init(
        proto: String,
        address: String,
        port: Int,
        replySource: String,
        interface: String? = nil,
        dualStack: Bool? = nil,
        counters: ServiceCounters? = nil
    ) {
        self.proto = proto
        self.address = address
        self.port = port
        self.replySource = replySource
        self.interface = interface
        self.dualStack = dualStack
        self.counters = counters
    }

    /// `address:port`, with an IPv6 address in brackets (`[::1]:7`).
    public var endpoint: String {
        address.contains(":") ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    /// Whether replies' source address is left to the kernel: wrong on multi-homed hosts.
    public var replySourceIsUnreliable: Bool { replySource == "kernel" }

    enum CodingKeys: String, CodingKey {
        case proto
        case address
        case port
        case replySource = "reply_source"
        case interface
        case dualStack = "dual_stack"
        case counters
    }
}

/// A service's traffic counters.
public struct ServiceCounters: Codable, Sendable, Equatable {
    /// Datagrams received (TCP traffic is counted in bytes and connections).
    public var rxPackets: UInt64
    /// Datagrams sent.
    public var txPackets: UInt64
    /// Bytes received: UDP payloads, and TCP stream bytes read from clients.
    public var rxBytes: UInt64
    /// Bytes sent: UDP payloads, and TCP stream bytes written to clients.
    public var txBytes: UInt64
    /// Everything dropped, whatever the reason; the sum of ``drops``.
    public var dropped: UInt64
    /// TCP connections accepted.
    public var tcpAccepted: UInt64
    /// TCP connections open now.
    public var tcpActive: UInt64
    /// TCP connections closed.
    public var tcpClosed: UInt64
    /// Drops by reason, such as `truncated`, `send_error`, `reflection`, `rate_limit`.
    public var drops: [String: UInt64]

    /// Creates counters; all zero unless given.
    public init(
        rxPackets: UInt64 = 0,
        txPackets: UInt64 = 0,
        rxBytes: UInt64 = 0,
        txBytes: UInt64 = 0,
        dropped: UInt64 = 0,
        tcpAccepted: UInt64 = 0,
        tcpActive: UInt64 = 0,
        tcpClosed: UInt64 = 0,
        drops: [String: UInt64] = [:]
    ) {
        self.rxPackets = rxPackets
        self.txPackets = txPackets
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.dropped = dropped
        self.tcpAccepted = tcpAccepted
        self.tcpActive = tcpActive
        self.tcpClosed = tcpClosed
        self.drops = drops
    }

    enum CodingKeys: String, CodingKey {
        case rxPackets = "rx_packets"
        case txPackets = "tx_packets"
        case rxBytes = "rx_bytes"
        case txBytes = "tx_bytes"
        case dropped
        case tcpAccepted = "tcp_accepted"
        case tcpActive = "tcp_active"
        case tcpClosed = "tcp_closed"
        case drops
    }
}
