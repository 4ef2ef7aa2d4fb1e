/// A service as decoded, with what the checks across services need besides the definition itself.
struct DecodedService {
    /// The definition; meaningful when `isComplete`.
    var definition: ServiceDefinition
    /// Whether the handler was known (otherwise `definition.handler` is a placeholder).
    var isComplete: Bool
    /// The valid UDP ports with the positions of their nodes.
    var udpPorts: [(port: UInt16, position: SourcePosition)]
    /// The valid TCP ports with the positions of their nodes.
    var tcpPorts: [(port: UInt16, position: SourcePosition)]
    /// Whether `bind` and `family` were valid, so that `definition.bind` may take part in the overlap check.
    var bindIsValid: Bool
    /// Where each of `definition.upstreams` stands, for the check that a forward does not point at udpd's own
    /// listeners.
    var upstreamPositions: [SourcePosition]
    /// Where each name of `interfaces:` stands, for the check against the host's interfaces.
    var interfacePositions: [SourcePosition]
}

extension Diagnostics {
    /// The keys a service may have, in the order `INTERFACE.md` documents them.
    static let serviceKeys = [
        "handler", "udp", "tcp", "bind", "family", "interfaces", "freebind", "workers", "max-datagram",
        "rate-limit", "allow", "deny", "max-connections", "max-connections-per-source", "idle-timeout",
        "framing", "max-message", "upstream", "health-check", "timeout", "max-sessions", "proxy-protocol",
        "transparent", "log-sessions", "command", "max-instances", "user", "group",
    ]

    /// Keys that only some handlers take.
    static let handlerKeys: [String: [HandlerKind]] = [
        "upstream": [.forward], "health-check": [.forward], "max-sessions": [.forward], "proxy-protocol": [.forward],
        "transparent": [.forward], "log-sessions": [.forward],
        "timeout": [.forward, .exec],
        "command": [.exec], "max-instances": [.exec], "user": [.exec], "group": [.exec],
        // An exec program owns its connection's socket, so udpd never sees the frames to check them.
        "framing": [.echo, .discard, .forward], "max-message": [.echo, .discard, .forward],
    ]

    /// Keys that only make sense with UDP ports.
    static let udpOnlyKeys: Set<String> = ["workers", "max-datagram", "rate-limit"]

    /// Keys that only make sense with TCP ports.
    static let tcpOnlyKeys: Set<String> = [
        "max-connections", "max-connections-per-source", "idle-timeout", "framing", "max-message",
    ]

    /// Whether `name` is a valid service name: ASCII letters, digits, `_`, `.` and `-`, at least one.
    ///
    /// Checked on the UTF-8 bytes: asking each Character whether it is a letter consulted Unicode tables and was
    /// the largest single cost of loading a thousand services.
    static func isValidServiceName(_ name: String) -> Bool {
        !name.isEmpty
            && name.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
                    true
                default:
                    false
                }
            }
    }

    /// Decodes one entry of `services:`; `nil` when the body is not even a mapping.
    mutating func service(named keyNode: YAMLNode, body: YAMLNode) -> DecodedService? {
        let name = keyNode.scalarText ?? ""
        if !Self.isValidServiceName(name) {
            error("service name '\(name)' may contain only letters, digits, '_', '.' and '-'", at: keyNode)
        }
        guard let keys = mapping(body, named: "service '\(name)'", validKeys: Self.serviceKeys) else { return nil }
        var service = ServiceDefinition(name: name, handler: .echo, position: keyNode.position)

        var handler: HandlerKind?
        if let node = keys["handler"] {
            handler = choice(node, named: "handler", as: HandlerKind.self)
        } else {
            let valid = HandlerKind.allCases.map(\.rawValue).joined(separator: ", ")
            error("service '\(name)' has no 'handler' (expected one of: \(valid))", at: keyNode)
        }
        let udp = keys["udp"].map { ports($0, key: "udp") } ?? []
        let tcp = keys["tcp"].map { ports($0, key: "tcp") } ?? []
        if keys["udp"] == nil, keys["tcp"] == nil {
            error("service '\(name)' has neither 'udp' nor 'tcp' ports", at: keyNode)
        }
        service.udpPorts = udp.map(\.port)
        service.tcpPorts = tcp.map(\.port)
        var familyIsValid = true
        if let node = keys["family"] {
            if let family = choice(node, named: "family", as: FamilyPolicy.self) {
                service.family = family
            } else {
                familyIsValid = false
            }
        }
        let bind = keys["bind"].map { bindPolicy($0, family: familyIsValid ? service.family : .dual) }
        if let bind { service.bind = bind ?? .wildcard }

        decodeFurtherKeys(keys, into: &service)
        let upstreams = keys["upstream"].map { self.upstreams($0) } ?? []
        service.upstreams = upstreams.map(\.upstream)
        checkPlacement(keys, handler: handler, service: service)
        if let handler {
            service.handler = handler
            checkRequiredKeys(keys, handler: handler, keyNode: keyNode, service: service)
        }
        return DecodedService(
            definition: service,
            isComplete: handler != nil,
            udpPorts: udp,
            tcpPorts: tcp,
            bindIsValid: familyIsValid && bind != .some(nil),
            upstreamPositions: upstreams.map(\.position),
            interfacePositions: keys["interfaces"].map { node in
                if case .sequence(let items) = node.content { items.map(\.position) } else { [] }
            } ?? []
        )
    }

    /// The optional keys of the "Further keys" table, each decoded on its own.
    private mutating func decodeFurtherKeys(_ keys: KeyedNodes, into service: inout ServiceDefinition) {
        if let node = keys["interfaces"], let names = textList(node, named: "'interfaces'", nonEmpty: true) {
            service.interfaces = names
            if case .sequence(let items) = node.content {
                for (item, name) in zip(items, names) where name.utf8.count > 15 {
                    error("interface name '\(name)' is longer than 15 bytes", at: item)
                }
            }
        }
        service.freebind = keys["freebind"].flatMap { boolean($0, named: "'freebind'") } ?? false
        service.workers = keys["workers"].flatMap { count($0, within: ConfigurationBounds.workers) }
        service.maxDatagram = keys["max-datagram"].flatMap { size($0, within: ConfigurationBounds.maxDatagram) }
        service.rateLimit = keys["rate-limit"].flatMap { rateLimit($0) }
        service.allow = keys["allow"].map { prefixes($0, named: "'allow'", emptyIsError: true) } ?? []
        service.deny = keys["deny"].map { prefixes($0, named: "'deny'") } ?? []
        service.maxConnections = keys["max-connections"].flatMap {
            count($0, within: ConfigurationBounds.maxConnections)
        }
        service.maxConnectionsPerSource = keys["max-connections-per-source"].flatMap {
            count($0, within: ConfigurationBounds.maxConnectionsPerSource)
        }
        service.idleTimeout = keys["idle-timeout"].flatMap { duration($0, within: ConfigurationBounds.idleTimeout) }
        service.framing = keys["framing"].flatMap { choice($0, named: "framing", as: Framing.self) }
        service.maxMessage = keys["max-message"].flatMap { size($0, within: ConfigurationBounds.maxMessage) }
        service.healthCheck = keys["health-check"].flatMap { healthCheck($0) } ?? HealthCheck()
        service.timeout = keys["timeout"].flatMap { duration($0, within: ConfigurationBounds.timeout) }
        service.maxSessions = keys["max-sessions"].flatMap { count($0, within: ConfigurationBounds.maxSessions) }
        service.proxyProtocol = keys["proxy-protocol"].flatMap {
            choice($0, named: "proxy-protocol", as: ProxyProtocolVersion.self)
        }
        service.transparent = keys["transparent"].flatMap { boolean($0, named: "'transparent'") } ?? false
        service.logSessions = keys["log-sessions"].flatMap { boolean($0, named: "'log-sessions'") } ?? false
        service.maxInstances = keys["max-instances"].flatMap { count($0, within: ConfigurationBounds.maxInstances) }
        service.user = keys["user"].flatMap { text($0, named: "'user'") }
        service.group = keys["group"].flatMap { text($0, named: "'group'") }
        if let node = keys["command"], let argv = textList(node, named: "'command'", nonEmpty: true) {
            if case .sequence(let items) = node.content, let program = argv.first, !program.hasPrefix("/") {
                error(
                    "the program in 'command' must be an absolute path (no shell, no PATH search), "
                        + "found '\(program)'",
                    at: items[0]
                )
            } else {
                service.command = argv
            }
        }
    }

    /// Where a key may be used: ``handlerKeys``, ``udpOnlyKeys`` and ``tcpOnlyKeys`` in one table, so that each key
    /// of each service is hashed once rather than three times.
    private struct Placement {
        var owners: [HandlerKind]?
        var udpOnly = false
        var tcpOnly = false
    }

    private static let placements: [String: Placement] = {
        var table: [String: Placement] = [:]
        for (key, owners) in handlerKeys { table[key, default: Placement()].owners = owners }
        for key in udpOnlyKeys { table[key, default: Placement()].udpOnly = true }
        for key in tcpOnlyKeys { table[key, default: Placement()].tcpOnly = true }
        return table
    }()

    /// Keys that belong to another handler, to a protocol the service does not serve, or to a setting it lacks.
    private mutating func checkPlacement(_ keys: KeyedNodes, handler: HandlerKind?, service: ServiceDefinition) {
        for entry in keys.entries {
            guard let placement = Self.placements[entry.name] else { continue }
            if let handler, let owners = placement.owners, !owners.contains(handler) {
                let quoted = owners.map { "'\($0.rawValue)'" }
                let names =
                    quoted.count > 1
                    ? quoted.dropLast().joined(separator: ", ") + " and " + quoted.last! : quoted.joined()
                error("'\(entry.name)' is only valid for handler\(owners.count > 1 ? "s" : "") \(names)", at: entry.key)
            }
            if placement.udpOnly, keys["udp"] == nil {
                error("'\(entry.name)' applies only to UDP, and this service has no 'udp' ports", at: entry.key)
            }
            if placement.tcpOnly, keys["tcp"] == nil {
                error("'\(entry.name)' applies only to TCP, and this service has no 'tcp' ports", at: entry.key)
            }
        }
        if let key = keys.keyNode("max-message"), keys["framing"] == nil {
            error("'max-message' applies only to framed messages; add 'framing: krb5'", at: key)
        }
        // Checked on the node, not the decoded policy: an invalid list is still a list, reported once already.
        let bindIsList = keys["bind"].map { if case .sequence = $0.content { true } else { false } } ?? false
        if let key = keys.keyNode("freebind"), service.freebind, !bindIsList {
            error("'freebind' applies only when 'bind' lists addresses", at: key)
        }
    }

    /// What a handler cannot run without.
    private mutating func checkRequiredKeys(
        _ keys: KeyedNodes,
        handler: HandlerKind,
        keyNode: YAMLNode,
        service: ServiceDefinition
    ) {
        let name = service.name
        if handler == .forward, keys["upstream"] == nil {
            error("service '\(name)' has handler 'forward' but no 'upstream' (HOST:PORT)", at: keyNode)
        }
        if handler == .exec, keys["command"] == nil {
            error("service '\(name)' has handler 'exec' but no 'command' (the program and its arguments)", at: keyNode)
        }
    }
}
