import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address family as the transport sees it.
public enum IPFamily: String, Sendable, Hashable {
    case ipv4, ipv6

    /// The socket API's constant for the family (`AF_INET` or `AF_INET6`).
    public var socketDomain: CInt {
        switch self {
        case .ipv4: CInt(AF_INET)
        case .ipv6: CInt(AF_INET6)
        }
    }
}

/// An IPv4 or IPv6 address with a port: what a socket is bound to, or where a datagram came from.
///
/// It holds the `sockaddr` itself so that the datapath can hand it to the kernel without conversion.
public struct IPEndpoint: Sendable {
    @usableFromInline
    enum Storage: Sendable {
        case v4(sockaddr_in)
        case v6(sockaddr_in6)
    }

    @usableFromInline
    var storage: Storage

    /// Parses an address literal (`127.0.0.1`, `::1`, `fe80::1%eth0`) and a port; `nil` when it is not one.
    public init?(address: String, port: UInt16) {
        var v4 = in_addr()
        if inet_pton(AF_INET, address, &v4) == 1 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = port.bigEndian
            sin.sin_addr = v4
            self.storage = .v4(sin)
            return
        }
        var host = Substring(address)
        var scope: UInt32 = 0
        if let percent = address.firstIndex(of: "%") {
            host = address[..<percent]
            let name = String(address[address.index(after: percent)...])
            scope = if_nametoindex(name)
            if scope == 0, let numeric = UInt32(name) { scope = numeric }
            if scope == 0 { return nil }
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, String(host), &v6) == 1 else { return nil }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        sin6.sin6_addr = v6
        sin6.sin6_scope_id = scope
        self.storage = .v6(sin6)
    }

    /// The wildcard address of `family` with `port`.
    public static func wildcard(_ family: IPFamily, port: UInt16) -> IPEndpoint {
        switch family {
        case .ipv4: IPEndpoint(address: "0.0.0.0", port: port)!
        case .ipv6: IPEndpoint(address: "::", port: port)!
        }
    }

    /// Reads an endpoint from a `sockaddr` the kernel filled in; `nil` for other families.
    public init?(_ address: UnsafeRawPointer) {
        let family = address.load(as: sockaddr.self).sa_family
        switch CInt(family) {
        case AF_INET: self.storage = .v4(address.load(as: sockaddr_in.self))
        case AF_INET6: self.storage = .v6(address.load(as: sockaddr_in6.self))
        default: return nil
        }
    }

    /// The family of the address.
    public var family: IPFamily {
        switch storage {
        case .v4: .ipv4
        case .v6: .ipv6
        }
    }

    /// The port, in host byte order.
    public var port: UInt16 {
        get {
            switch storage {
            case .v4(let sin): UInt16(bigEndian: sin.sin_port)
            case .v6(let sin6): UInt16(bigEndian: sin6.sin6_port)
            }
        }
        set {
            switch storage {
            case .v4(var sin):
                sin.sin_port = newValue.bigEndian
                storage = .v4(sin)
            case .v6(var sin6):
                sin6.sin6_port = newValue.bigEndian
                storage = .v6(sin6)
            }
        }
    }

    /// Whether this is `0.0.0.0` or `::`.
    public var isWildcard: Bool {
        switch storage {
        case .v4(let sin): sin.sin_addr.s_addr == 0
        case .v6(let sin6): withUnsafeBytes(of: sin6.sin6_addr) { $0.allSatisfy { $0 == 0 } }
        }
    }

    /// Whether this is an IPv6 link-local address (`fe80::/10`), which needs its interface to be reached.
    public var isLinkLocal: Bool {
        guard case .v6(let sin6) = storage else { return false }
        return withUnsafeBytes(of: sin6.sin6_addr) { $0[0] == 0xfe && ($0[1] & 0xc0) == 0x80 }
    }

    /// The address without the port, in its canonical text form (`fe80::1%eth0` for a scoped address).
    public var addressText: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
        switch storage {
        case .v4(var sin):
            inet_ntop(AF_INET, &sin.sin_addr, &buffer, socklen_t(buffer.count))
            return decodeCString(buffer)
        case .v6(var sin6):
            inet_ntop(AF_INET6, &sin6.sin6_addr, &buffer, socklen_t(buffer.count))
            let text = decodeCString(buffer)
            guard sin6.sin6_scope_id != 0 else { return text }
            var name = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
            if if_indextoname(sin6.sin6_scope_id, &name) != nil { return "\(text)%\(decodeCString(name))" }
            return "\(text)%\(sin6.sin6_scope_id)"
        }
    }

    /// Calls `body` with the endpoint as a `sockaddr` and its length, as `bind`, `connect` and `sendto` take it.
    @inlinable
    public func withSockAddr<Result, Failure: Error>(
        _ body: (UnsafePointer<sockaddr>, socklen_t) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        switch storage {
        case .v4(var sin):
            return try withUnsafeBytes(of: &sin) { (raw) throws(Failure) in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
        case .v6(var sin6):
            return try withUnsafeBytes(of: &sin6) { (raw) throws(Failure) in
                try body(raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count))
            }
        }
    }
}

extension IPEndpoint: CustomStringConvertible {
    /// `127.0.0.1:7` or `[::1]:7`.
    public var description: String {
        family == .ipv6 ? "[\(addressText)]:\(port)" : "\(addressText):\(port)"
    }
}

extension IPEndpoint: Hashable {
    public static func == (lhs: IPEndpoint, rhs: IPEndpoint) -> Bool {
        switch (lhs.storage, rhs.storage) {
        case (.v4(let a), .v4(let b)):
            return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr
        case (.v6(let a), .v6(let b)):
            return a.sin6_port == b.sin6_port && a.sin6_scope_id == b.sin6_scope_id
                && withUnsafeBytes(of: a.sin6_addr) { x in withUnsafeBytes(of: b.sin6_addr) { y in x.elementsEqual(y) }
                }
        default:
            return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch storage {
        case .v4(let sin):
            hasher.combine(sin.sin_port)
            hasher.combine(sin.sin_addr.s_addr)
        case .v6(let sin6):
            hasher.combine(sin6.sin6_port)
            hasher.combine(sin6.sin6_scope_id)
            withUnsafeBytes(of: sin6.sin6_addr) { hasher.combine(bytes: $0) }
        }
    }
}

/// Decodes a NUL-terminated C string held in an array.
func decodeCString(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

extension IPEndpoint {
    /// An IPv4 endpoint from a raw address.
    init(v4 address: in_addr, port: UInt16) {
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr = address
        self.storage = .v4(sin)
    }

    /// An IPv6 endpoint from a raw address and scope.
    init(v6 address: in6_addr, scope: UInt32, port: UInt16) {
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = port.bigEndian
        sin6.sin6_addr = address
        sin6.sin6_scope_id = scope
        self.storage = .v6(sin6)
    }

    /// The IPv4 address, for a v4 endpoint.
    var inAddr: in_addr? {
        if case .v4(let sin) = storage { return sin.sin_addr }
        return nil
    }

    /// The IPv6 address, for a v6 endpoint.
    var in6Addr: in6_addr? {
        if case .v6(let sin6) = storage { return sin6.sin6_addr }
        return nil
    }
}

extension IPEndpoint {
    /// Whether the address is multicast (`224.0.0.0/4`, `ff00::/8`).
    public var isMulticast: Bool {
        switch storage {
        case .v4(let sin): (UInt32(bigEndian: sin.sin_addr.s_addr) >> 28) == 0xe
        case .v6(let sin6): withUnsafeBytes(of: sin6.sin6_addr) { $0[0] == 0xff }
        }
    }

    /// Whether the address is `255.255.255.255` or `0.0.0.0` (never a real unicast source).
    public var isBroadcastOrUnspecified: Bool {
        switch storage {
        case .v4(let sin): sin.sin_addr.s_addr == UInt32.max || sin.sin_addr.s_addr == 0
        case .v6: isWildcard
        }
    }
}
