import UDPDConfig

/// The limits a service puts on its TCP connections; new connections take the policy in place when they are
/// accepted, so a reload changes it for new connections only.
public struct ConnectionPolicy: Sendable {
    /// Default `max-connections` per service (MIT krb5 keeps 45 TCP connections and closes the least recently used).
    public static let defaultMaxConnections = 64
    /// Default `idle-timeout`.
    public static let defaultIdleTimeout = Duration.seconds(30)
    /// Default deadline for a complete framed request once its first byte arrived (Heimdal uses 4 s).
    public static let defaultRequestDeadline = Duration.seconds(5)
    /// Default `max-message` of `framing: krb5` (MIT krb5's own limit).
    public static let defaultMaxMessage = 1 << 20

    /// Who may connect.
    public var filter: AddressFilter
    /// Connections of the service across all its listeners; at the limit the oldest one is closed.
    public var maxConnections: Int
    /// Connections from one source address; more are refused.
    public var maxConnectionsPerSource: Int?
    /// A connection with no byte read or written for this long is closed.
    public var idleTimeout: Duration
    /// For framed services: the longest a message may take from its first byte to its last.
    public var requestDeadline: Duration?
    /// For framed services: the largest message, in bytes.
    public var maxMessage: Int?
    /// The service's connection table, shared by its listeners and kept across reloads.
    public var table: ConnectionTable

    /// The policy of `service`, counting its connections in `table`.
    public init(_ service: ServiceDefinition, table: ConnectionTable) {
        filter = AddressFilter(allow: service.allow, deny: service.deny)
        maxConnections = service.maxConnections ?? Self.defaultMaxConnections
        maxConnectionsPerSource = service.maxConnectionsPerSource
        idleTimeout = service.idleTimeout ?? Self.defaultIdleTimeout
        requestDeadline = service.framing == nil ? nil : Self.defaultRequestDeadline
        maxMessage = service.framing == nil ? nil : service.maxMessage ?? Self.defaultMaxMessage
        self.table = table
    }

    /// No filter, the default limits and a table of its own (for listeners started without a service).
    public init() {
        self.init(ServiceDefinition(name: "", handler: .discard), table: ConnectionTable())
    }
}
