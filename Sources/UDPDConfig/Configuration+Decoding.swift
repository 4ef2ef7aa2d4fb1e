/// Decoding of the top level and the small sections (`control`, `log`, `metrics`, `user`, `group`, `batch-size`).
extension Diagnostics {
    /// The keys allowed at the top level, in the order `INTERFACE.md` documents them.
    static let topLevelKeys = ["control", "log", "services", "user", "group", "metrics", "batch-size"]

    /// Decodes a whole document; every problem is recorded, and the returned configuration is meaningful only when
    /// none was. The decoded services come back too, with the positions the overlap check needs.
    mutating func configuration(root: YAMLNode?) -> (Configuration, [DecodedService]) {
        var configuration = Configuration(file: file)
        guard let root, !root.isNull else {
            error(
                "the file defines no services (expected a 'services:' mapping)",
                at: SourcePosition(line: 1, column: 1)
            )
            return (configuration, [])
        }
        guard let keys = mapping(root, named: "the top level", validKeys: Self.topLevelKeys) else {
            return (configuration, [])
        }
        if let node = keys["control"] { configuration.control = control(node) }
        if let node = keys["log"] { configuration.log = log(node) }
        configuration.user = keys["user"].flatMap { text($0, named: "'user'") }
        configuration.group = keys["group"].flatMap { text($0, named: "'group'") }
        configuration.metrics = keys["metrics"].flatMap { metrics($0) }
        if let node = keys["batch-size"], let size = count(node, within: ConfigurationBounds.batchSize) {
            configuration.batchSize = size
        }
        guard let servicesNode = keys["services"] else {
            error("the file defines no services (expected a 'services:' mapping)", at: root)
            return (configuration, [])
        }
        guard let services = mapping(servicesNode, named: "'services'", validKeys: nil, keyNoun: "service") else {
            return (configuration, [])
        }
        var decoded: [DecodedService] = []
        decoded.reserveCapacity(services.entries.count)
        for entry in services.entries {
            if let service = service(named: entry.key, body: entry.value) {
                decoded.append(service)
            }
        }
        // One exact allocation: filtering and then mapping grew two arrays of large structs by doubling.
        configuration.services.reserveCapacity(decoded.count)
        for service in decoded where service.isComplete { configuration.services.append(service.definition) }
        checkExecUsers(configuration)
        return (configuration, decoded)
    }

    private mutating func control(_ node: YAMLNode) -> ControlSettings {
        var settings = ControlSettings()
        guard let keys = mapping(node, named: "'control'", validKeys: ["socket", "mode"]) else { return settings }
        if let socket = keys["socket"], let path = text(socket, named: "'socket'") {
            if !path.hasPrefix("/") {
                error("'socket' must be an absolute path, found '\(path)'", at: socket)
            } else if path.utf8.count > 107 {
                error("'socket' is \(path.utf8.count) bytes long; a Unix socket path holds at most 107", at: socket)
            } else {
                settings.socket = path
            }
        }
        if let mode = keys["mode"] {
            // Read as octal whether quoted or not: libyaml hands over the text, so 0660 and "0660" agree.
            let digits = mode.scalarText ?? ""
            if (1...4).contains(digits.count), digits.allSatisfy({ ("0"..."7").contains($0) }),
                let value = UInt32(digits, radix: 8), value <= 0o777
            {
                settings.mode = value
            } else {
                error("'mode' must be octal permissions such as \"0660\" (at most 0777), found \(mode.found)", at: mode)
            }
        }
        return settings
    }

    private mutating func log(_ node: YAMLNode) -> LogSettings {
        var settings = LogSettings()
        guard let keys = mapping(node, named: "'log'", validKeys: ["level"]) else { return settings }
        if let level = keys["level"].flatMap({ choice($0, named: "log level", as: LogLevel.self) }) {
            settings.level = level
        }
        return settings
    }

    private mutating func metrics(_ node: YAMLNode) -> MetricsSettings? {
        guard let keys = mapping(node, named: "'metrics'", validKeys: ["listen"]) else { return nil }
        guard let listen = keys["listen"] else {
            error("'metrics' needs 'listen' (HOST:PORT)", at: node)
            return nil
        }
        return hostPort(listen, named: "'listen'").map { MetricsSettings(listen: $0, position: listen.position) }
    }

    /// A `HOST:PORT` or `[IPV6]:PORT` value.
    mutating func hostPort(_ node: YAMLNode, named name: String) -> HostPort? {
        guard let text = text(node, named: name) else { return nil }
        switch AddressParsing.hostPort(text) {
        case .success(let value):
            return value
        case .failure(let problem):
            error("\(name) must be HOST:PORT or [IPV6]:PORT; '\(text)': \(problem.reason)", at: node)
            return nil
        }
    }

    /// `upstream:`: one `HOST:PORT`, or a non-empty list of distinct ones in order of preference.
    /// Each with the position of its node.
    mutating func upstreams(_ node: YAMLNode) -> [(upstream: HostPort, position: SourcePosition)] {
        guard case .sequence(let items) = node.content else {
            return hostPort(node, named: "'upstream'").map { [($0, node.position)] } ?? []
        }
        if items.isEmpty {
            error("'upstream' must list at least one HOST:PORT", at: node)
            return []
        }
        let bound = ConfigurationBounds.upstreams
        if items.count > bound.range.upperBound {
            error(
                "'upstream' lists \(items.count) upstreams; it may list \(bound.rangeText) (\(bound.reason))",
                at: node
            )
            return []
        }
        var result: [(upstream: HostPort, position: SourcePosition)] = []
        for item in items {
            guard let upstream = hostPort(item, named: "each item of 'upstream'") else { continue }
            if let first = result.first(where: { $0.upstream == upstream }) {
                error(
                    "duplicate upstream \(upstream) (first at \(first.position)): a request goes to one upstream, "
                        + "so listing one twice means nothing",
                    at: item
                )
                continue
            }
            result.append((upstream, item.position))
        }
        return result
    }
}
