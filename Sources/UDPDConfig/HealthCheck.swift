/// How a forward service learns that an upstream is down or up again: the `health-check:` key.
///
/// Two settings are equal when they would check alike; a service whose health check changes is rebuilt at reload.
public struct HealthCheck: Sendable, Equatable {
    /// What is sent to each upstream every ``interval``.
    public enum Probe: String, Sendable, Equatable, CaseIterable {
        /// An AS-REQ for a principal that does not exist; any KRB-ERROR or AS-REP is an answer.
        case krb5
        /// A query for `. NS`; any answer with the query's ID is an answer.
        case dns
        /// No probe: only failures that traffic reveals (an ICMP error, a refused or timed-out TCP connect) count.
        case none
    }

    /// `probe:`.
    public var probe: Probe
    /// `interval:`: time between two probes of one upstream; with `probe: none`, how long a failed upstream stays
    /// down.
    public var interval: Duration
    /// `timeout:`: how long a probe waits for its answer; shorter than ``interval``.
    public var timeout: Duration
    /// `fall:`: consecutive failed probes before an upstream is down.
    public var fall: Int
    /// `rise:`: consecutive good probes before a down upstream is up again.
    public var rise: Int

    /// The defaults of udpd.yaml(5), for a forward service without `health-check:`.
    public static let defaultInterval = Duration.seconds(1)
    /// The default probe timeout.
    public static let defaultTimeout = Duration.milliseconds(500)
    /// The default `fall`.
    public static let defaultFall = 3
    /// The default `rise`.
    public static let defaultRise = 2

    /// Creates a health check; every setting not given has its default.
    public init(
        probe: Probe = .none,
        interval: Duration = HealthCheck.defaultInterval,
        timeout: Duration = HealthCheck.defaultTimeout,
        fall: Int = HealthCheck.defaultFall,
        rise: Int = HealthCheck.defaultRise
    ) {
        self.probe = probe
        self.interval = interval
        self.timeout = timeout
        self.fall = fall
        self.rise = rise
    }
}

extension Diagnostics {
    /// `health-check: {probe, interval, timeout, fall, rise}`, every key optional; the probe's `timeout` must be
    /// shorter than its `interval` (a probe still waiting when the next one is due would overlap it).
    mutating func healthCheck(_ node: YAMLNode) -> HealthCheck? {
        let valid = ["probe", "interval", "timeout", "fall", "rise"]
        guard let keys = mapping(node, named: "'health-check'", validKeys: valid) else { return nil }
        var check = HealthCheck()
        let probe = keys["probe"].map { choice($0, named: "probe", as: HealthCheck.Probe.self) }
        let interval = keys["interval"].map { duration($0, within: ConfigurationBounds.healthInterval) }
        let timeout = keys["timeout"].map { duration($0, within: ConfigurationBounds.healthTimeout) }
        let fall = keys["fall"].map { count($0, within: ConfigurationBounds.healthFall) }
        let rise = keys["rise"].map { count($0, within: ConfigurationBounds.healthRise) }
        // `.some(nil)`: the key is there, and its value was refused (and reported).
        guard probe != .some(nil), interval != .some(nil), timeout != .some(nil), fall != .some(nil),
            rise != .some(nil)
        else { return nil }
        if let probe = probe ?? nil { check.probe = probe }
        if let interval = interval ?? nil { check.interval = interval }
        if let timeout = timeout ?? nil { check.timeout = timeout }
        if let fall = fall ?? nil { check.fall = fall }
        if let rise = rise ?? nil { check.rise = rise }
        if check.timeout >= check.interval {
            let which = keys["timeout"] == nil ? "default 'timeout'" : "'timeout'"
            error(
                "the health check's \(which) (\(Units.text(duration: check.timeout))) must be shorter than its "
                    + "'interval' (\(Units.text(duration: check.interval))): a probe must end before the next starts",
                at: keys["timeout"] ?? keys["interval"] ?? node
            )
            return nil
        }
        return check
    }
}
