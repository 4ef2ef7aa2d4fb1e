/// The checks across services: no two listeners may claim the same protocol, address and port (whether two services
/// or one service claim them, or the metrics endpoint), and no forward may point at one of udpd's own listeners.
extension Diagnostics {
    /// One (protocol, family, address, port) a service or the metrics endpoint would listen on.
    private struct Claim {
        enum Scope: Equatable {
            /// The wildcard address of the family (`bind: wildcard`, or `0.0.0.0` listed): covers every address of it.
            case wildcard
            /// `bind: per-address`: every address of the family, one socket each.
            case everyAddress
            /// One explicit address (canonical text, with scope).
            case address(BindAddress)
        }

        /// The service's index among the decoded services; `nil` for the metrics endpoint.
        var service: Int?
        var proto: String
        var port: UInt16
        var position: SourcePosition
        var family: AddressFamily
        var scope: Scope

        func overlaps(_ other: Claim) -> Bool {
            guard proto == other.proto, port == other.port, family == other.family else { return false }
            if case .address(let mine) = scope, case .address(let theirs) = other.scope {
                return mine == theirs
            }
            return true  // a wildcard or per-address claim covers every address of its family
        }

        /// Whether a datagram or connection sent to `address` on this claim's port would reach this listener.
        /// `knownLocal` holds the explicit addresses of the file, which are the host's own.
        func receives(_ address: BindAddress, knownLocal: Set<BindAddress>) -> Bool {
            guard address.family == family else { return false }
            switch scope {
            case .wildcard, .everyAddress:
                return address.isAlwaysLocal || knownLocal.contains(address)
            case .address(let mine):
                // A connect to the wildcard address goes to the host's loopback address.
                return mine == address || (address.isWildcard && mine.isAlwaysLocal && !mine.isWildcard)
                    || (mine.isWildcard && (address.isAlwaysLocal || knownLocal.contains(address)))
            }
        }

        var addressDescription: String {
            switch scope {
            case .wildcard: family == .ipv4 ? "0.0.0.0" : "::"
            case .everyAddress: "every \(family == .ipv4 ? "IPv4" : "IPv6") address"
            case .address(let address): address.text
            }
        }

        func owner(in services: [DecodedService]) -> String {
            service.map { "service '\(services[$0].definition.name)'" } ?? "the metrics endpoint"
        }
    }

    private struct PortKey: Hashable {
        var proto: String
        var port: UInt16
    }

    /// Reports, at the later claim's port node, every port that overlaps one claimed earlier (by another service, by
    /// the same service, as `bind: [0.0.0.0, 127.0.0.1]` does, or by the metrics endpoint, which comes last); then
    /// every forward whose upstream is one of these listeners.
    ///
    /// Services whose `bind` or `family` is invalid are left out: their claims are unknown, and guessing would add
    /// errors that vanish once the first one is fixed.
    ///
    /// Earlier claims are indexed by protocol and port, the only ones that can overlap, so that a thousand services
    /// cost a thousand lookups rather than half a million comparisons.
    mutating func checkOverlaps(_ services: [DecodedService], metrics: MetricsSettings? = nil) {
        var earlier: [PortKey: [Claim]] = [:]
        for (index, service) in services.enumerated() where service.bindIsValid {
            let claims = Self.claims(of: service, index: index)
            var reported: Set<SourcePosition> = []
            for claim in claims where !reported.contains(claim.position) {
                let samePort = earlier[PortKey(proto: claim.proto, port: claim.port)] ?? []
                guard let first = samePort.first(where: { $0.overlaps(claim) }) else { continue }
                reported.insert(claim.position)
                error(
                    "\(claim.proto) port \(claim.port) on \(claim.addressDescription) is already claimed by "
                        + "\(first.owner(in: services)) (\(first.proto) port \(first.port) on "
                        + "\(first.addressDescription), at \(first.position))",
                    at: claim.position
                )
            }
            for claim in claims { earlier[PortKey(proto: claim.proto, port: claim.port), default: []].append(claim) }
        }
        if let metrics, let claim = Self.claim(of: metrics),
            let first = earlier[PortKey(proto: "tcp", port: claim.port)]?.first(where: { $0.overlaps(claim) })
        {
            error(
                "'listen' \(metrics.listen) is already claimed by \(first.owner(in: services)) (tcp port "
                    + "\(first.port) on \(first.addressDescription), at \(first.position)); the metrics endpoint "
                    + "needs a TCP port of its own",
                at: claim.position
            )
        }
        checkForwardLoops(services, claims: earlier)
    }

    /// A forward whose `upstream` is one of udpd's own listeners (a literal address; names are resolved at run time)
    /// would send every request back into udpd: one forged datagram would loop for ever. The check is per protocol:
    /// a forward's UDP ports relay over UDP, its TCP ports over TCP.
    private mutating func checkForwardLoops(_ services: [DecodedService], claims: [PortKey: [Claim]]) {
        var knownLocal: Set<BindAddress> = []
        for service in services where service.bindIsValid {
            if case .addresses(let addresses) = service.definition.bind { knownLocal.formUnion(addresses) }
        }
        for service in services where service.isComplete && service.definition.handler == .forward {
            for (upstream, position) in zip(service.definition.upstreams, service.upstreamPositions) {
                guard let address = AddressParsing.address(upstream.host) else { continue }
                let relayed = [("udp", !service.udpPorts.isEmpty), ("tcp", !service.tcpPorts.isEmpty)]
                for (proto, used) in relayed where used {
                    let candidates = claims[PortKey(proto: proto, port: upstream.port)] ?? []
                    guard let target = candidates.first(where: { $0.receives(address, knownLocal: knownLocal) })
                    else { continue }
                    error(
                        "'upstream' \(upstream) is udpd's own \(proto) listener (\(target.owner(in: services)), port "
                            + "\(target.port) on \(target.addressDescription), at \(target.position)): forwarding "
                            + "into itself would loop; point 'upstream' at the real server",
                        at: position
                    )
                    break
                }
            }
        }
    }

    private static func claim(of metrics: MetricsSettings) -> Claim? {
        guard let position = metrics.position, let address = AddressParsing.address(metrics.listen.host) else {
            return nil  // a host name is resolved when the endpoint starts
        }
        return Claim(
            service: nil,
            proto: "tcp",
            port: metrics.listen.port,
            position: position,
            family: address.family,
            scope: address.isWildcard ? .wildcard : .address(address)
        )
    }

    private static func claims(of service: DecodedService, index: Int) -> [Claim] {
        let definition = service.definition
        var scopes: [(AddressFamily, Claim.Scope)] = []
        switch definition.bind {
        case .wildcard:
            scopes = definition.family.families.map { ($0, .wildcard) }
        case .perAddress:
            scopes = definition.family.families.map { ($0, .everyAddress) }
        case .addresses(let addresses):
            scopes = addresses.map { ($0.family, $0.isWildcard ? .wildcard : .address($0)) }
        }
        var claims: [Claim] = []
        for (proto, ports) in [("udp", service.udpPorts), ("tcp", service.tcpPorts)] {
            for (port, position) in ports {
                for (family, scope) in scopes {
                    claims.append(
                        Claim(
                            service: index,
                            proto: proto,
                            port: port,
                            position: position,
                            family: family,
                            scope: scope
                        )
                    )
                }
            }
        }
        return claims
    }
}
