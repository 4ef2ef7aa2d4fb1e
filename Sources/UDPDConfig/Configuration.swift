/// A position in a configuration file: the line and column of a YAML node, both counting from 1.
public struct SourcePosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The line, counting from 1.
    public var line: Int
    /// The column, counting from 1.
    public var column: Int

    /// Creates a position from a line and a column, both counting from 1.
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }

    public var description: String { "\(line):\(column)" }

    public static func < (lhs: SourcePosition, rhs: SourcePosition) -> Bool {
        (lhs.line, lhs.column) < (rhs.line, rhs.column)
    }
}

/// A whole, validated udpd configuration (version 1 of the format in `INTERFACE.md`).
///
/// Values are plain data: two configurations compare equal when they would run the same services, which is
/// what the supervisor's reload diff relies on (positions are ignored by `==`).
public struct Configuration: Sendable, Equatable {
    /// The path the configuration was read from, as given by the operator.
    public var file: String
    /// Where the control socket lives and who may use it.
    public var control: ControlSettings
    /// How much udpd logs.
    public var log: LogSettings
    /// The user to drop privileges to after binding, if any.
    public var user: String?
    /// The group to drop privileges to after binding, if any.
    public var group: String?
    /// The optional HTTP metrics endpoint.
    public var metrics: MetricsSettings?
    /// The services, in the order the file lists them.
    public var services: [ServiceDefinition]
    /// `batch-size:`: datagrams each UDP worker thread takes with one recvmmsg and answers with one sendmmsg.
    public var batchSize: Int

    /// The batch size when the file names none.
    public static let defaultBatchSize = 32
    /// The largest batch: Linux takes at most 1024 messages (UIO_MAXIOV) in one recvmmsg or sendmmsg.
    public static var maximumBatchSize: Int { ConfigurationBounds.batchSize.range.upperBound }

    /// Creates a configuration.
    public init(
        file: String,
        control: ControlSettings = ControlSettings(),
        log: LogSettings = LogSettings(),
        user: String? = nil,
        group: String? = nil,
        metrics: MetricsSettings? = nil,
        services: [ServiceDefinition] = [],
        batchSize: Int = Configuration.defaultBatchSize
    ) {
        self.file = file
        self.control = control
        self.log = log
        self.user = user
        self.group = group
        self.metrics = metrics
        self.services = services
        self.batchSize = batchSize
    }
}

/// The `control:` section.
public struct ControlSettings: Sendable, Equatable {
    /// The control socket's path; `nil` means the default for the running user.
    public var socket: String?
    /// The socket file's permission bits; `nil` means 0600.
    public var mode: UInt32?

    /// Creates control settings.
    public init(socket: String? = nil, mode: UInt32? = nil) {
        self.socket = socket
        self.mode = mode
    }
}

/// The `log:` section.
public struct LogSettings: Sendable, Equatable {
    /// The lowest level that is logged.
    public var level: LogLevel

    /// Creates log settings.
    public init(level: LogLevel = .info) {
        self.level = level
    }
}

/// A log level as written in the configuration (the names of swift-log's levels).
public enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// The `metrics:` section.
public struct MetricsSettings: Sendable, Equatable {
    /// Where the HTTP `/metrics` endpoint listens.
    public var listen: HostPort
    /// Where `listen` stands in the file, for errors found after loading.
    @IgnoredInComparison public var position: SourcePosition?

    /// Creates metrics settings.
    public init(listen: HostPort, position: SourcePosition? = nil) {
        self.listen = listen
        self.position = position
    }
}

/// A `HOST:PORT` or `[V6]:PORT` pair as written by the operator; the host is not resolved here.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// The host: an IP address literal (without brackets) or a name.
    public var host: String
    /// The port, 1...65535.
    public var port: UInt16

    /// Creates a host and port.
    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// What a service does with the requests its listeners receive.
public enum HandlerKind: String, Sendable, CaseIterable {
    /// RFC 862: every datagram and every TCP byte comes back.
    case echo
    /// RFC 863: everything is read and thrown away.
    case discard
    /// Relays to the first of its `upstream`s that is up, keeping per-client sessions for UDP.
    case forward
    /// Runs `command` per datagram or per connection, inetd style.
    case exec
}

/// An IP address family.
public enum AddressFamily: String, Sendable, Hashable, CaseIterable {
    case ipv4, ipv6
}

/// The `family:` key: which address families a service listens on.
public enum FamilyPolicy: String, Sendable, Equatable, CaseIterable {
    case ipv4, ipv6, dual

    /// The families this policy covers, IPv4 first.
    public var families: [AddressFamily] {
        switch self {
        case .ipv4: [.ipv4]
        case .ipv6: [.ipv6]
        case .dual: [.ipv4, .ipv6]
        }
    }
}

/// Where something stands in the file, kept beside a value without being part of it: every `IgnoredInComparison`
/// equals every other and all hash alike, so that a type holding one can synthesize `==` and `hash(into:)` and still
/// mean "the same settings, wherever they are written". One rule instead of hand-written `==` listing every field
/// (forget one there and a reload keeps a stale handler).
@propertyWrapper
public struct IgnoredInComparison<Value: Sendable>: Sendable, Hashable {
    /// The value, which takes no part in `==` or hashing.
    public var wrappedValue: Value

    /// Wraps a value.
    public init(wrappedValue: Value) {
        self.wrappedValue = wrappedValue
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { true }

    public func hash(into hasher: inout Hasher) {}
}

/// The 128 bits of an IP address, IPv4 written IPv4-mapped (`::ffff:a.b.c.d`), as the configuration parsed them:
/// what the runtime compares against and binds, so that it never parses address text again.
public struct AddressBits: Sendable, Hashable {
    /// The first 64 bits, most significant first.
    public var high: UInt64
    /// The last 64 bits.
    public var low: UInt64

    /// Creates the bits from their two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// The 4 bytes of an IPv4 address (the last 32 bits), in network order.
    public var ipv4Octets: [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: low >> (24 - 8 * UInt64($0))) } }

    /// The 16 bytes of an IPv6 address, in network order.
    public var ipv6Octets: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> (56 - 8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> (56 - 8 * UInt64($0))) }
    }
}

/// A validated IP address literal from the configuration, in its canonical text form.
///
/// `==` and hashing ignore ``position``: the same address written elsewhere in the file is the same address.
public struct BindAddress: Sendable, Hashable, CustomStringConvertible {
    /// The canonical text (`inet_ntop` form), with `%scope` for a scoped IPv6 address.
    public var text: String
    /// The address family.
    public var family: AddressFamily
    /// The address itself, as parsed (without the scope).
    public var bits: AddressBits
    /// The interface named after `%` in a scoped IPv6 address (`fe80::1%eth0`), resolved only when binding.
    public var scope: String?
    /// Where the address stands in the file, for errors found after loading (an address the host lacks).
    @IgnoredInComparison public var position: SourcePosition?

    /// Creates an address from text the configuration's parser accepts (canonical or not; it is made canonical).
    /// For tests and for code that builds configurations by hand; `text` must be an address literal.
    public init(text: String, family: AddressFamily, position: SourcePosition? = nil) {
        guard let parsed = AddressParsing.address(text), parsed.family == family else {
            preconditionFailure("BindAddress(text:): '\(text)' is not an \(family) address literal")
        }
        self = parsed
        self.position = position
    }

    /// Creates an address from what the parser found.
    init(text: String, family: AddressFamily, bits: AddressBits, scope: String?) {
        self.text = text
        self.family = family
        self.bits = bits
        self.scope = scope
        self.position = nil
    }

    public var description: String { text }

    /// Whether this is `0.0.0.0` or `::`.
    public var isWildcard: Bool {
        bits == (family == .ipv4 ? AddressBits(high: 0, low: 0xffff_0000_0000) : AddressBits(high: 0, low: 0))
    }

    /// Whether the host reaches this address on itself whatever its interfaces: `127.0.0.0/8`, `::1`, and the
    /// wildcard addresses (a connect to `0.0.0.0` or `::` goes to the host itself).
    public var isAlwaysLocal: Bool {
        switch family {
        case .ipv4: isWildcard || (bits.low >> 24) & 0xff == 127
        case .ipv6: isWildcard || (bits.high == 0 && bits.low == 1)
        }
    }

    /// Whether this IPv6 address is IPv4-mapped (`::ffff:a.b.c.d`): udpd's IPv6 sockets are V6ONLY and take no IPv4,
    /// so the configuration refuses such addresses and asks for the IPv4 form.
    public var isIPv4Mapped: Bool { family == .ipv6 && bits.high == 0 && bits.low >> 32 == 0xffff }
}

/// The `bind:` key: which local addresses a service's sockets are bound to.
public enum BindPolicy: Sendable, Equatable {
    /// One socket per family on the wildcard address; replies leave from the request's destination address.
    case wildcard
    /// One socket per local address, following addresses as they come and go.
    case perAddress
    /// Exactly these addresses.
    case addresses([BindAddress])
}

/// A per-source reply rate limit (`rate-limit: {per-source: N/s, burst: N, over-limit: drop | krb5-tcp}`).
public struct RateLimit: Sendable, Equatable {
    /// What happens to a datagram over the limit (`over-limit:`).
    public enum OverLimit: String, Sendable, Equatable, CaseIterable {
        /// Dropped, counted as `rate_limited`.
        case drop
        /// A Kerberos AS-REQ or TGS-REQ is answered by udpd with KRB_ERR_RESPONSE_TOO_BIG, so that the client
        /// retries over TCP (counted as `rate_limited_tcp_redirect`); anything else is dropped.
        case krb5TCP = "krb5-tcp"
    }

    /// Replies per second allowed to one source address.
    public var perSecond: Int
    /// How many replies may be sent at once before the rate applies.
    public var burst: Int
    /// What happens to a datagram over the limit.
    public var overLimit: OverLimit

    /// Creates a rate limit.
    public init(perSecond: Int, burst: Int, overLimit: OverLimit = .drop) {
        self.perSecond = perSecond
        self.burst = burst
        self.overLimit = overLimit
    }
}

/// An address prefix from `allow:` or `deny:`, such as `10.0.0.0/8` or `2001:db8::/32`.
public struct AddressPrefix: Sendable, Hashable, CustomStringConvertible {
    /// The network address in canonical text form.
    public var address: BindAddress
    /// The prefix length (0...32 for IPv4, 0...128 for IPv6).
    public var length: Int

    /// Creates a prefix.
    public init(address: BindAddress, length: Int) {
        self.address = address
        self.length = length
    }

    public var description: String { "\(address.text)/\(length)" }
}

/// TCP message framing.
public enum Framing: String, Sendable, Equatable, CaseIterable {
    /// 4-byte big-endian length-prefixed messages (RFC 4120 7.2.2, RFC 3244).
    case krb5
}

/// `proxy-protocol:` (forward): the header that tells an upstream who the client is.
public enum ProxyProtocolVersion: String, Sendable, Equatable, CaseIterable {
    /// The binary PROXY protocol version 2 header (HAProxy's `proxy-protocol.txt`, section 2.2).
    case v2
}

/// One entry of `services:`.
///
/// Two services are equal when they would behave the same: `==` is synthesized over every setting, and where the
/// service stands in the file (``position``) takes no part in it.
public struct ServiceDefinition: Sendable, Equatable {
    /// The service's name (`[A-Za-z0-9_.-]+`).
    public var name: String
    /// What the service does.
    public var handler: HandlerKind
    /// UDP ports, in file order, without duplicates.
    public var udpPorts: [UInt16]
    /// TCP ports, in file order, without duplicates.
    public var tcpPorts: [UInt16]
    /// Which local addresses are bound.
    public var bind: BindPolicy
    /// Which families are served.
    public var family: FamilyPolicy
    /// `interfaces:`; empty means every interface.
    public var interfaces: [String]
    /// `freebind:`.
    public var freebind: Bool
    /// `workers:`; `nil` means the number of CPUs.
    public var workers: Int?
    /// `max-datagram:` in bytes.
    public var maxDatagram: Int?
    /// `rate-limit:`.
    public var rateLimit: RateLimit?
    /// `allow:`; empty means everyone not denied.
    public var allow: [AddressPrefix]
    /// `deny:`.
    public var deny: [AddressPrefix]
    /// `max-connections:`.
    public var maxConnections: Int?
    /// `max-connections-per-source:`.
    public var maxConnectionsPerSource: Int?
    /// `idle-timeout:`.
    public var idleTimeout: Duration?
    /// `framing:`.
    public var framing: Framing?
    /// `max-message:` in bytes.
    public var maxMessage: Int?
    /// `upstream:` (forward only): one or more upstreams, in order of preference, without duplicates.
    public var upstreams: [HostPort]
    /// `health-check:` (forward only); the defaults when the key is absent.
    public var healthCheck: HealthCheck
    /// `timeout:` (forward and exec).
    public var timeout: Duration?
    /// `max-sessions:` (forward).
    public var maxSessions: Int?
    /// `proxy-protocol:` (forward): a header with the client's and the asked local address before every datagram
    /// sent upstream and at the start of every relayed TCP connection; `nil` for none.
    public var proxyProtocol: ProxyProtocolVersion?
    /// `transparent:` (forward): upstream sockets are bound to the client's own address and port (IP_TRANSPARENT),
    /// so that the upstream sees the client as the source.
    public var transparent: Bool
    /// `log-sessions:` (forward): a log line when a UDP session or a TCP relay opens and one when it closes.
    public var logSessions: Bool
    /// `command:` (exec only): the program and its arguments.
    public var command: [String]?
    /// `max-instances:` (exec).
    public var maxInstances: Int?
    /// `user:` (exec): who the program runs as. Without it, a udpd running as root starts programs as `nobody`;
    /// `user: root` is the explicit opt-in to root.
    public var user: String?
    /// `group:` (exec): the program's group; without it, the user's primary group (`nogroup` for the default).
    public var group: String?
    /// Where the service's name stands in the file; used to point at the service in later errors.
    @IgnoredInComparison public var position: SourcePosition

    /// Creates a service with the defaults of `INTERFACE.md` for everything not given.
    public init(
        name: String,
        handler: HandlerKind,
        udpPorts: [UInt16] = [],
        tcpPorts: [UInt16] = [],
        bind: BindPolicy = .wildcard,
        family: FamilyPolicy = .dual,
        position: SourcePosition = SourcePosition(line: 1, column: 1)
    ) {
        self.name = name
        self.handler = handler
        self.udpPorts = udpPorts
        self.tcpPorts = tcpPorts
        self.bind = bind
        self.family = family
        self.interfaces = []
        self.freebind = false
        self.workers = nil
        self.maxDatagram = nil
        self.rateLimit = nil
        self.allow = []
        self.deny = []
        self.maxConnections = nil
        self.maxConnectionsPerSource = nil
        self.idleTimeout = nil
        self.framing = nil
        self.maxMessage = nil
        self.upstreams = []
        self.healthCheck = HealthCheck()
        self.timeout = nil
        self.maxSessions = nil
        self.proxyProtocol = nil
        self.transparent = false
        self.logSessions = false
        self.command = nil
        self.maxInstances = nil
        self.user = nil
        self.group = nil
        self.position = position
    }
}
