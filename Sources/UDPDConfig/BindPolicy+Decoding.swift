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
    mutating func prefixes(_ node: YAMLNode, named name: String) -> [AddressPrefix] {
        guard case .sequence(let items) = node.content else {
            error("\(name) must be a list of address prefixes such as 10.0.0.0/8, found \(node.found)", at: node)
            return []
        }
        var result: [AddressPrefix] = []
        for item in items {
            guard let text = text(item, named: "a prefix in \(name)") else { continue }
            switch AddressParsing.prefix(text) {
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
}
