/// The range of every number a configuration holds, in one table: the decoder refuses a value outside it (with
/// its position), udpd.yaml(5) lists the same ranges (a test compares the page with this table), and the runtime
/// may rely on them.
///
/// Each maximum is generous for an operator and one the runtime can always honour: nothing it is multiplied by,
/// converted with or allocated for can overflow or exhaust memory when udpd starts. The runtime still does its
/// arithmetic without trapping (defence in depth), but these ranges are what make the values meaningful.
public enum ConfigurationBounds {
    // MARK: Top level

    /// `batch-size:`: Linux takes at most 1024 messages (UIO_MAXIOV) in one recvmmsg or sendmmsg.
    public static let batchSize = CountBound(key: "batch-size", 1...1024, reason: "the kernel's limit for one recvmmsg")

    // MARK: Ports

    /// `udp:` and `tcp:` (their messages, older than this table, say `1-65535`).
    public static let port = CountBound(key: "port", 1...65535, reason: "a port is 16 bits, and 0 is no port")

    // MARK: UDP

    /// `workers:`. Each worker is one socket per UDP address, port and family, and the pool grows to the largest
    /// number of workers a service asks for, one thread each (with a batch buffer of address space). 1024 is more
    /// threads per port than any machine udpd runs on has CPUs, and keeps a service's descriptors and threads in the
    /// thousands; a larger number would only fail at bind time, or starve the machine, instead of at `--check`.
    public static let workers = CountBound(key: "workers", 1...1024, reason: "threads serving each UDP port")

    /// `max-datagram:`. No UDP datagram is larger than 65535 bytes, and each worker reads into buffers of 64KiB:
    /// 64KiB (65536) is accepted, meaning "no limit beyond UDP's own", since operators write it so.
    public static let maxDatagram = SizeBound(key: "max-datagram", 1...65536, reason: "no UDP datagram is larger")

    /// `rate-limit: {per-source: N/s}`. A million replies a second to one source address is more than one worker
    /// sends in all; tokens are counted in millionths, so rate × elapsed microseconds stays far from 2^64.
    public static let ratePerSource = CountBound(
        key: "per-source",
        1...1_000_000,
        unit: "/s",
        reason: "replies a second to one source"
    )

    /// `rate-limit: {burst: N}`. Tokens are counted in millionths of a datagram in 64 bits: a million datagrams is
    /// 10^12 millionths, and a burst larger than a second at the highest rate means nothing.
    public static let rateBurst = CountBound(key: "burst", 1...1_000_000, reason: "replies sent at once to one source")

    // MARK: TCP

    /// `max-connections:`. Each connection holds a descriptor, and Linux lets one process hold at most
    /// 1048576 (fs.nr_open's default).
    public static let maxConnections = CountBound(
        key: "max-connections",
        1...1_048_576,
        reason: "each connection holds a descriptor"
    )

    /// `max-connections-per-source:`, for the same reason as ``maxConnections``.
    public static let maxConnectionsPerSource = CountBound(
        key: "max-connections-per-source",
        1...1_048_576,
        reason: "each connection holds a descriptor"
    )

    /// `idle-timeout:`. A week is longer than any TCP client waits in silence, and far from the 2^63 nanoseconds
    /// that event loop timers count in.
    public static let idleTimeout = DurationBound(
        key: "idle-timeout",
        .milliseconds(1) ... .seconds(7 * 24 * 3600),
        reason: "a week at most"
    )

    /// `max-message:`. 64 times MIT krb5's own limit of 1MiB; a framed message is never buffered whole, but a
    /// larger one is no Kerberos message (a frame could announce up to 2GiB).
    public static let maxMessage = SizeBound(key: "max-message", 1...(64 << 20), reason: "64 times MIT krb5's limit")

    // MARK: Forward and exec

    /// `timeout:`. A forward session idle for a week, or a program running for one, is as long as anyone means;
    /// the runtime counts time in 64-bit nanoseconds (292 years).
    public static let timeout = DurationBound(
        key: "timeout",
        .milliseconds(1) ... .seconds(7 * 24 * 3600),
        reason: "a week at most"
    )

    /// `max-sessions:`. Each UDP session holds a socket, so no more can exist than descriptors (1048576, as for
    /// ``maxConnections``).
    public static let maxSessions = CountBound(
        key: "max-sessions",
        1...1_048_576,
        reason: "each session holds a socket"
    )

    /// `max-instances:`. Each instance is a process with up to three pipes: 4096 is a hundred times the default
    /// and well under the smallest pid_max (32768).
    public static let maxInstances = CountBound(
        key: "max-instances",
        1...4096,
        reason: "each instance is a process"
    )

    // MARK: Forward health checks

    /// `upstream:` as a list. Each upstream is probed and reported on its own; 64 is more than any site puts
    /// behind one name, and keeps the probes and the status of one service small.
    public static let upstreams = CountBound(key: "upstream", 1...64, reason: "upstreams of one service")

    /// `health-check: {interval}`. At least 10ms, so that probes never become traffic of their own (a probe per
    /// upstream per interval); at most an hour, beyond which a health check means nothing.
    public static let healthInterval = DurationBound(
        key: "interval",
        .milliseconds(10) ... .seconds(3600),
        reason: "time between probes"
    )

    /// `health-check: {timeout}`; also shorter than the interval (checked beside the bound).
    public static let healthTimeout = DurationBound(
        key: "timeout",
        .milliseconds(1) ... .seconds(3600),
        reason: "how long a probe waits"
    )

    /// `health-check: {fall}`: consecutive failed probes before an upstream is down.
    public static let healthFall = CountBound(key: "fall", 1...100, reason: "consecutive probes")

    /// `health-check: {rise}`: consecutive good probes before an upstream is up again.
    public static let healthRise = CountBound(key: "rise", 1...100, reason: "consecutive probes")

    /// Every bound, in the order udpd.yaml(5) lists them.
    public static let all: [any ConfigurationBound] = [
        batchSize, workers, maxDatagram, ratePerSource, rateBurst, maxConnections, maxConnectionsPerSource,
        idleTimeout, maxMessage, timeout, maxSessions, maxInstances, upstreams, healthInterval, healthTimeout,
        healthFall, healthRise,
    ]
}

/// What every bound of ``ConfigurationBounds`` says about itself, for messages and the man page.
public protocol ConfigurationBound: Sendable {
    /// The key it applies to, as written in the file.
    var key: String { get }
    /// The range as an operator writes it, `1 to 1024`, `1ms to 168h`, `1 to 64KiB`.
    var rangeText: String { get }
    /// Why the maximum is what it is, in a few words.
    var reason: String { get }
}

/// The range of a count (workers, connections, sessions, ...), inclusive.
public struct CountBound: ConfigurationBound {
    public let key: String
    /// The smallest and largest valid values.
    public let range: ClosedRange<Int>
    /// What follows each number in text (`/s` for a rate).
    public let unit: String
    public let reason: String

    init(key: String, _ range: ClosedRange<Int>, unit: String = "", reason: String) {
        self.key = key
        self.range = range
        self.unit = unit
        self.reason = reason
    }

    public var rangeText: String { "\(range.lowerBound)\(unit) to \(range.upperBound)\(unit)" }
}

/// The range of a size in bytes, inclusive.
public struct SizeBound: ConfigurationBound {
    public let key: String
    /// The smallest and largest valid sizes, in bytes.
    public let range: ClosedRange<Int>
    public let reason: String

    init(key: String, _ range: ClosedRange<Int>, reason: String) {
        self.key = key
        self.range = range
        self.reason = reason
    }

    public var rangeText: String { "\(Units.text(bytes: range.lowerBound)) to \(Units.text(bytes: range.upperBound))" }
}

/// The range of a duration, inclusive.
public struct DurationBound: ConfigurationBound {
    public let key: String
    /// The shortest and longest valid durations.
    public let range: ClosedRange<Duration>
    public let reason: String

    init(key: String, _ range: ClosedRange<Duration>, reason: String) {
        self.key = key
        self.range = range
        self.reason = reason
    }

    public var rangeText: String {
        "\(Units.text(duration: range.lowerBound)) to \(Units.text(duration: range.upperBound))"
    }
}
