#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// IP address literals, prefixes and `HOST:PORT` pairs, checked with `inet_pton` and printed with `inet_ntop`.
///
/// Syntax only: nothing here looks at the host's interfaces or resolves names.
enum AddressParsing {
    /// Parses an address literal (no scope) into `raw`, which holds either family; its family, or `nil` when
    /// `text` is not one. No intermediate arrays: a thousand services each listing an address made byte arrays a
    /// visible part of loading.
    private static func parse(_ text: some StringProtocol, into raw: inout in6_addr) -> AddressFamily? {
        let text = String(text)
        guard !text.isEmpty, !text.utf8.contains(0) else { return nil }
        if inet_pton(AF_INET, text, &raw) == 1 { return .ipv4 }
        if inet_pton(AF_INET6, text, &raw) == 1 { return .ipv6 }
        return nil
    }

    /// The canonical (`inet_ntop`) text of the `family` address in `raw`.
    private static func canonicalText(_ raw: inout in6_addr, family: AddressFamily) -> String? {
        withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer -> String? in
            guard inet_ntop(family == .ipv4 ? AF_INET : AF_INET6, &raw, buffer.baseAddress, 64) != nil else {
                return nil
            }
            return String(cString: buffer.baseAddress!)
        }
    }

    /// The 128 bits of the `family` address in `raw` (IPv4 mapped).
    private static func bits(_ raw: in6_addr, family: AddressFamily) -> AddressBits {
        withUnsafeBytes(of: raw) { bytes in
            if family == .ipv4 {
                let v4 = (0..<4).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) }
                return AddressBits(high: 0, low: 0xffff_0000_0000 | v4)
            }
            let high = (0..<8).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) }
            let low = (8..<16).reduce(UInt64(0)) { $0 << 8 | UInt64(bytes[$1]) }
            return AddressBits(high: high, low: low)
        }
    }

    /// An address literal in canonical form; an IPv6 address may carry a `%scope` (kept as written).
    static func address(_ text: String) -> BindAddress? {
        let percent = text.utf8.firstIndex(of: UInt8(ascii: "%"))
        var raw = in6_addr()
        guard let family = parse(percent.map { text[..<$0] } ?? text[...], into: &raw),
            var canonical = canonicalText(&raw, family: family)
        else { return nil }
        var scopeName: String?
        if let percent {
            let scope = text[text.index(after: percent)...]
            guard family == .ipv6, !scope.isEmpty,
                !scope.unicodeScalars.contains(where: { $0 == "/" || $0.properties.isWhitespace || $0.value < 0x20 })
            else { return nil }
            canonical += "%" + scope
            scopeName = String(scope)
        }
        return BindAddress(text: canonical, family: family, bits: bits(raw, family: family), scope: scopeName)
    }

    /// Why a prefix is invalid.
    enum PrefixProblem: Error, Equatable {
        /// Not `ADDRESS` or `ADDRESS/LENGTH` with a valid length for the family.
        case malformed
        /// Bits beyond the prefix length are set; `network` is what was probably meant.
        case hostBitsSet(network: String)
    }

    /// A CIDR prefix; a bare address is a host prefix (/32 or /128).
    ///
    /// A prefix with host bits set (`10.0.0.1/8`) is an error, not silently normalised: it usually means the
    /// operator typed the wrong length, and an allow or deny list should cover exactly what was written.
    static func prefix(_ text: String) -> Result<AddressPrefix, PrefixProblem> {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        var raw = in6_addr()
        guard let family = parse(parts[0], into: &raw) else { return .failure(.malformed) }
        let maximum = family == .ipv4 ? 32 : 128
        var length = maximum
        if parts.count == 2 {
            guard let given = Diagnostics.decimal(String(parts[1])), given <= maximum else {
                return .failure(.malformed)
            }
            length = given
        }
        var network = raw
        var hostBitsSet = false
        withUnsafeMutableBytes(of: &network) { bytes in
            for bit in length..<maximum {
                let mask = UInt8(0x80) >> UInt8(bit % 8)
                if bytes[bit / 8] & mask != 0 { hostBitsSet = true }
                bytes[bit / 8] &= ~mask
            }
        }
        guard let text = canonicalText(&network, family: family) else { return .failure(.malformed) }
        let address = BindAddress(text: text, family: family, bits: bits(network, family: family), scope: nil)
        guard !hostBitsSet else {
            return .failure(.hostBitsSet(network: "\(address.text)/\(length)"))
        }
        return .success(AddressPrefix(address: address, length: length))
    }

    /// `HOST:PORT` or `[IPV6]:PORT`; the host is an IP literal (made canonical) or a DNS name. The error is a
    /// phrase that completes "invalid ...: ".
    static func hostPort(_ text: String) -> Result<HostPort, HostPortProblem> {
        let host: String
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("missing ']'")) }
            let inside = String(text[text.index(after: text.startIndex)..<close])
            guard let address = address(inside), address.family == .ipv6 else {
                return .failure(.init("'\(inside)' is not an IPv6 address"))
            }
            if address.isIPv4Mapped {
                let v4 = address.bits.ipv4Octets.map(String.init).joined(separator: ".")
                let rest = text[text.index(after: close)...]
                return .failure(
                    .init("'\(inside)' is an IPv4-mapped address; write the IPv4 address, as in \(v4)\(rest)")
                )
            }
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return .failure(.init("missing ':PORT' after ']'")) }
            host = address.text
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return .failure(.init("missing ':PORT'")) }
            let name = String(text[..<colon])
            portText = text[text.index(after: colon)...]
            if name.contains(":") {
                return .failure(.init("write an IPv6 address in brackets, as in [\(name)]:\(portText)"))
            }
            if let address = address(name) {
                host = address.text
            } else if isHostName(name) {
                host = name
            } else {
                return .failure(.init("'\(name)' is neither an IP address nor a host name"))
            }
        }
        guard let port = Diagnostics.decimal(String(portText)), (1...65535).contains(port) else {
            return .failure(.init("the port must be a number 1-65535, found '\(portText)'"))
        }
        return .success(HostPort(host: host, port: UInt16(port)))
    }

    /// Why a `HOST:PORT` is invalid, as a phrase for an operator.
    struct HostPortProblem: Error, Equatable {
        var reason: String
        init(_ reason: String) { self.reason = reason }
    }

    /// A DNS name: dot-separated labels of letters, digits, `-` and `_`, not ending in an all-numeric label
    /// (so a mistyped IPv4 address such as `10.0.0.256` is not taken for a name).
    static func isHostName(_ name: String) -> Bool {
        var labels = name.split(separator: ".", omittingEmptySubsequences: false)
        if labels.count > 1, labels.last?.isEmpty == true { labels.removeLast() }  // a trailing dot is allowed
        guard !name.isEmpty, name.utf8.count <= 253, let last = labels.last,
            !last.allSatisfy({ $0.isASCII && $0.isNumber })
        else { return false }
        return labels.allSatisfy { label in
            (1...63).contains(label.count) && label.first != "-" && label.last != "-"
                && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
        }
    }
}
