/// The outcome of `udpctl reload`: whether the new configuration was applied, and what changed.
public struct ReloadReport: Codable, Sendable, Equatable {
    /// Whether the new configuration was applied; when false, the old one keeps running unchanged.
    public var ok: Bool
    /// The generation running after the reload (unchanged when rejected).
    public var generation: Int
    /// Why the reload was rejected, one `FILE:LINE:COLUMN: error: MESSAGE` line each.
    public var errors: [String]
    /// Listeners opened, written `SERVICE PROTO ADDRESS:PORT` (`echo udp 127.0.0.1:7`).
    public var listenersAdded: [String]
    /// Listeners closed, written like ``listenersAdded``.
    public var listenersRemoved: [String]
    /// Listeners kept open across the reload, written like ``listenersAdded``.
    public var listenersKept: [String]
    /// Services that appeared.
    public var servicesAdded: [String]
    /// Services that disappeared.
    public var servicesRemoved: [String]
    /// Services whose settings changed.
    public var servicesChanged: [String]

    /// Creates a report; lists are empty unless given.
    public init(
        ok: Bool,
        generation: Int,
        errors: [String] = [],
        listenersAdded: [String] = [],
        listenersRemoved: [String] = [],
        listenersKept: [String] = [],
        servicesAdded: [String] = [],
        servicesRemoved: [String] = [],
        servicesChanged: [String] = []
    ) {
        self.ok = ok
        self.generation = generation
        self.errors = errors
        self.listenersAdded = listenersAdded
        self.listenersRemoved = listenersRemoved
        self.listenersKept = listenersKept
        self.servicesAdded = servicesAdded
        self.servicesRemoved = servicesRemoved
        self.servicesChanged = servicesChanged
    }

    enum CodingKeys: String, CodingKey {
        case ok
        case generation
        case errors
        case listenersAdded = "listeners_added"
        case listenersRemoved = "listeners_removed"
        case listenersKept = "listeners_kept"
        case servicesAdded = "services_added"
        case servicesRemoved = "services_removed"
        case servicesChanged = "services_changed"
    }
}
