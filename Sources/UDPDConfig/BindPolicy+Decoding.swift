/// Decoding of `bind:` and of the address lists `allow:` and `deny:`.
extension Diagnostics {
    /// `bind: wildcard | per-address | [ADDRESS, ...]`; `nil` when invalid. `family` is the service's family
    /// policy, which every listed address must agree with.
    mutating func bindPolicy(_ node: YAMLNode, family: FamilyPolicy) -> BindPolicy? {
        switch node.content {
        case .scalar("wildcard", _):
            return .wildcard
        case .scalar("per-address", _):
            return .perAddress
        case .sequence(let items):
            if items.isEmpty {
                error("'bind' must list at least one address", at: node)
                return nil
            }
            var addresses: [(address: BindAddress, position: SourcePosition)] = []
            var valid = true
            for item in items {
                guard let address = bindAddress(item) else {
                    valid = false
                    continue
                }
                if let first = addresses.first(where: { $0.address == address }) {
                    error("duplicate address '\(address.text)' (first at \(first.position))", at: item)
                    valid = false
                    continue
                }
                if !family.families.contains(address.family) {
                    let written = address.family == .ipv4 ? "an IPv4" : "an IPv6"
                    error("'\(address.text)' is \(written) address, but 'family' is \(family.rawValue)", at: item)
                    valid = false
                }
                // The wildcard address of a family holds the port on every address of it: a second socket on one
                // of them would fail at start with "in use", against udpd's own socket.
                if let other = addresses.first(where: {
                    $0.address.family == address.family && ($0.address.isWildcard || address.isWildcard)
                }) {
                    let (wide, narrow) = other.address.isWildcard ? (other.address, address) : (address, other.address)
                    error(
                        "'\(address.text)' overlaps '\(other.address.text)' (at \(other.position)): \(wide.text) "
                            + "already covers \(narrow.text) on the same ports; list either the wildcard address or "
                            + "specific ones",
                        at: item
                    )
                    valid = false
                }
                addresses.append((address, item.position))
            }
            return valid ? .addresses(addresses.map(\.address)) : nil
        default:
            var message = "'bind' must be wildcard, per-address or a list of addresses, found \(node.found)"
            if let text = node.scalarText, AddressParsing.address(text) != nil {
                message += "; write a single address as a list: [\(text)]"
            }
            error(message, at: node)
            return nil
        }
    }

    private mutating func bindAddress(_ node: YAMLNode) -> BindAddress? {
        guard let text = text(node, named: "an address in 'bind'") else { return nil }
        if var address = AddressParsing.address(text) {
            if address.isIPv4Mapped {
                error(
                    "'\(text)' is an IPv4-mapped IPv6 address; udpd's IPv6 sockets take no IPv4, so write the IPv4 "
                        + "address itself: \(Self.unmappedIPv4(address.bits))",
                    at: node
                )
                return nil
            }
            address.position = node.position
            return address
        }
        var message = "'\(text)' is not an IPv4 or IPv6 address"
        if text.hasPrefix("[") {
            message += "; write IPv6 addresses without brackets"
        }
        error(message, at: node)
        return nil
    }

    /// `allow:` or `deny:`: a list of prefixes such as `10.0.0.0/8`; a bare address is a host prefix.
    ///
    /// An empty `allow` is an error: read literally it would serve no one, and read as "no list" it would serve
    /// everyone; either way the file does not say what the operator meant. An IPv4-mapped prefix
    /// (`::ffff:0:0/96`) is an error too: IPv4 clients reach udpd over IPv4 sockets and are matched by IPv4
    /// prefixes only, so it would match no one.
    mutating func prefixes(_ node: YAMLNode, named name: String, emptyIsError: Bool = false) -> [AddressPrefix] {
        guard case .sequence(let items) = node.content else {
            error("\(name) must be a list of address prefixes such as 10.0.0.0/8, found \(node.found)", at: node)
            return []
        }
        if items.isEmpty, emptyIsError {
            error(
                "\(name) is empty, which would serve no one; list the prefixes to serve (0.0.0.0/0 and ::/0 for "
                    + "everyone), or leave \(name) out",
                at: node
            )
        }
        var result: [AddressPrefix] = []
        for item in items {
            guard let text = text(item, named: "a prefix in \(name)") else { continue }
            switch AddressParsing.prefix(text) {
            case .success(let prefix) where prefix.address.isIPv4Mapped && prefix.length >= 96:
                error(
                    "'\(text)' is an IPv4-mapped prefix, which matches no one: IPv4 clients are matched by IPv4 "
                        + "prefixes only; write \(Self.unmappedIPv4(prefix.address.bits))/\(prefix.length - 96)",
                    at: item
                )
            case .success(let prefix):
                result.append(prefix)
            case .failure(.malformed):
                error("'\(text)' is not an address prefix such as 10.0.0.0/8 or 2001:db8::/32", at: item)
            case .failure(.hostBitsSet(let network)):
                error("'\(text)' has bits set beyond the prefix length; did you mean '\(network)'?", at: item)
            }
        }
        return result
    }

    /// The IPv4 address in the last 32 bits of `bits`, in dotted form.
    static func unmappedIPv4(_ bits: AddressBits) -> String {
        bits.ipv4Octets.map(String.init).joined(separator: ".")
    }
}
