import UDPDConfig
import UDPDTransport

/// A service's `allow:` and `deny:` lists, checked before any handler work.
///
/// The rule: a source matching any `deny` prefix is refused; otherwise, when `allow` is not empty, a source must
/// match one of its prefixes; with both lists empty everyone is served. Deny wins over allow whatever the order
/// in the file, so that an operator can carve an exception out of a broad allow (`allow: [10.0.0.0/8]`,
/// `deny: [10.9.0.0/16]`). IPv4 prefixes match IPv4 sources only, IPv6 prefixes IPv6 sources only: `::/0` is every
/// IPv6 client and no IPv4 one. (The configuration refuses an empty `allow` and IPv4-mapped prefixes.)
public struct AddressFilter: Sendable, Equatable {
    /// One prefix, in the form the check needs.
    struct Prefix: Sendable, Equatable {
        /// The network, IPv4 mapped, as the configuration parsed it.
        var network: IPAddressBits
        /// The prefix length over the 128 bits (an IPv4 length plus 96).
        var length: Int
        /// Whether this is an IPv4 prefix; it then matches IPv4 sources only, and an IPv6 prefix IPv6 ones only.
        var isIPv4: Bool

        /// Whether `address` lies in this prefix: same family, same leading bits.
        @inline(__always)
        func contains(_ address: IPAddressBits) -> Bool {
            address.isIPv4 == isIPv4 && address.hasPrefix(network, length: length)
        }
    }

    let allow: [Prefix]
    let deny: [Prefix]

    /// Builds the filter from a service's lists.
    public init(allow: [AddressPrefix], deny: [AddressPrefix]) {
        self.allow = allow.map(Self.prefix)
        self.deny = deny.map(Self.prefix)
    }

    /// Whether the filter lets everyone through (neither list given).
    public var isEmpty: Bool { allow.isEmpty && deny.isEmpty }

    /// Whether a source at `address` may be served.
    public func admits(_ address: IPAddressBits) -> Bool {
        for prefix in deny where prefix.contains(address) { return false }
        if allow.isEmpty { return true }
        for prefix in allow where prefix.contains(address) { return true }
        return false
    }

    /// The configuration's parsed prefix in the check's form; nothing is parsed again, so nothing can be dropped.
    private static func prefix(_ prefix: AddressPrefix) -> Prefix {
        let bits = prefix.address.bits
        let isIPv4 = prefix.address.family == .ipv4
        return Prefix(
            network: IPAddressBits(high: bits.high, low: bits.low),
            length: prefix.length + (isIPv4 ? 96 : 0),
            isIPv4: isIPv4
        )
    }
}
