import UDPDConfig
import UDPDTransport

/// A service's `allow:` and `deny:` lists, checked before any handler work.
///
/// The rule: a source matching any `deny` prefix is refused; otherwise, when `allow` is not empty, a source must
/// match one of its prefixes; with both lists empty everyone is served. Deny wins over allow whatever the order
/// in the file, so that an operator can carve an exception out of a broad allow (`allow: [10.0.0.0/8]`,
/// `deny: [10.9.0.0/16]`). IPv4 prefixes match IPv4 sources only, IPv6 prefixes IPv6 sources only.
public struct AddressFilter: Sendable, Equatable {
    /// One prefix, in the form the check needs.
    struct Prefix: Sendable, Equatable {
        var network: IPAddressBits
        var length: Int
    }

    let allow: [Prefix]
    let deny: [Prefix]

    /// Builds the filter from a service's lists.
    public init(allow: [AddressPrefix], deny: [AddressPrefix]) {
        self.allow = allow.compactMap(Self.prefix)
        self.deny = deny.compactMap(Self.prefix)
    }

    /// Whether the filter lets everyone through (neither list given).
    public var isEmpty: Bool { allow.isEmpty && deny.isEmpty }

    /// Whether a source at `address` may be served.
    public func admits(_ address: IPAddressBits) -> Bool {
        for prefix in deny where address.hasPrefix(prefix.network, length: prefix.length) { return false }
        if allow.isEmpty { return true }
        for prefix in allow where address.hasPrefix(prefix.network, length: prefix.length) { return true }
        return false
    }

    private static func prefix(_ prefix: AddressPrefix) -> Prefix? {
        // A scope ("fe80::1%eth0") is not part of the address bits.
        let text = prefix.address.text.split(separator: "%").first.map(String.init) ?? prefix.address.text
        guard let endpoint = IPEndpoint(address: text, port: 0) else { return nil }
        let offset = endpoint.family == .ipv4 ? 96 : 0
        return Prefix(network: endpoint.addressBits, length: prefix.length + offset)
    }
}
