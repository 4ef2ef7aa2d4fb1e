/// The check across services: no two services may claim the same protocol, address and port.
extension Diagnostics {
    /// One (protocol, family, address, port) a service would listen on.
    private struct Claim {
        enum Scope: Equatable {
            /// The wildcard address of the family: covers every address of it.
            case wildcard
            /// `bind: per-address`: every address of the family, one socket each.
            case everyAddress
            /// One explicit address (canonical text, with scope).
            case address(String)
        }

        var service: Int
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

        var addressDescription: String {
            switch scope {
            case .wildcard: family == .ipv4 ? "0.0.0.0" : "::"
            case .everyAddress: "every \(family == .ipv4 ? "IPv4" : "IPv6") address"
            case .address(let text): text
            }
        }
    }

    /// Reports, at the later service's port node, every port that overlaps one of an earlier service.
    ///
    /// Services whose `bind` or `family` is invalid are left out: their claims are unknown, and guessing would add
    /// errors that vanish once the first one is fixed.
    ///
    /// Earlier claims are indexed by protocol and port, the only ones that can overlap, so that a thousand services
    /// cost a thousand lookups rather than half a million comparisons.
    mutating func checkOverlaps(_ services: [DecodedService]) {
        struct PortKey: Hashable {
            var proto: String
            var port: UInt16
        }
        var earlier: [PortKey: [Claim]] = [:]
        for (index, service) in services.enumerated() where service.bindIsValid {
            let claims = Self.claims(of: service, index: index)
            var reported: Set<SourcePosition> = []
            for claim in claims where !reported.contains(claim.position) {
                let samePort = earlier[PortKey(proto: claim.proto, port: claim.port)] ?? []
                guard let first = samePort.first(where: { $0.overlaps(claim) }) else { continue }
                reported.insert(claim.position)
                let owner = services[first.service].definition.name
                error(
                    "\(claim.proto) port \(claim.port) on \(claim.addressDescription) is already claimed by service "
                        + "'\(owner)' (\(first.proto) port \(first.port) on \(first.addressDescription), "
                        + "at \(first.position))",
                    at: claim.position
                )
            }
            for claim in claims { earlier[PortKey(proto: claim.proto, port: claim.port), default: []].append(claim) }
        }
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
            scopes = addresses.map { ($0.family, .address($0.text)) }
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
