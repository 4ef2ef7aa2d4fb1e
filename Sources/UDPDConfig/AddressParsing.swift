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
    /// The address's bytes (4 or 16) and family, or `nil` when `text` is not an address literal. No scope allowed.
    static func bytes(_ text: String) -> (bytes: [UInt8], family: AddressFamily)? {
        guard !text.isEmpty, !text.utf8.contains(0) else { return nil }
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return (withUnsafeBytes(of: &v4) { Array($0) }, .ipv4)
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return (withUnsafeBytes(of: &v6) { Array($0) }, .ipv6)
        }
        return nil
    }

    /// The canonical (`inet_ntop`) text of an address given as bytes.
    static func canonicalText(_ bytes: [UInt8], family: AddressFamily) -> String {
        var buffer = [CChar](repeating: 0, count: 64)
        let familyCode = family == .ipv4 ? AF_INET : AF_INET6
        let ok = bytes.withUnsafeBytes { raw in
            inet_ntop(familyCode, raw.baseAddress, &buffer, socklen_t(buffer.count)) != nil
        }
        guard ok else { return "" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An address literal in canonical form; an IPv6 address may carry a `%scope` (kept as written).
    ///
    /// Parsed and printed without intermediate arrays: a thousand services each listing an address made the
    /// byte arrays of ``bytes(_:)`` and ``canonicalText(_:family:)`` a visible part of loading.
    static func address(_ text: String) -> BindAddress? {
        let percent = text.utf8.firstIndex(of: UInt8(ascii: "%"))
        let host = percent.map { String(text[..<$0]) } ?? text
        guard !host.isEmpty, !host.utf8.contains(0) else { return nil }
        var raw = in6_addr()  // large enough for either family
        let family: AddressFamily
        if inet_pton(AF_INET, host, &raw) == 1 {
            family = .ipv4
        } else if inet_pton(AF_INET6, host, &raw) == 1 {
            family = .ipv6
        } else {
            return nil
        }
        let printed = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 64) { buffer -> String? in
            guard inet_ntop(family == .ipv4 ? AF_INET : AF_INET6, &raw, buffer.baseAddress, 64) != nil else {
                return nil
            }
            return String(cString: buffer.baseAddress!)
        }
        guard var canonical = printed else { return nil }
        if let percent {
            let scope = text[text.index(after: percent)...]
            guard family == .ipv6, !scope.isEmpty, !scope.contains(where: { $0 == "/" || $0.isWhitespace })
            else { return nil }
            canonical += "%" + scope
        }
        return BindAddress(text: canonical, family: family)
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
        guard let parsed = bytes(String(parts[0])) else { return .failure(.malformed) }
        let maximum = parsed.bytes.count * 8
        var length = maximum
        if parts.count == 2 {
            guard let given = Diagnostics.decimal(String(parts[1])), given <= maximum else {
                return .failure(.malformed)
            }
            length = given
        }
        var network = parsed.bytes
        for bit in length..<maximum {
            network[bit / 8] &= ~(UInt8(0x80) >> UInt8(bit % 8))
        }
        let address = BindAddress(text: canonicalText(network, family: parsed.family), family: parsed.family)
        guard network == parsed.bytes else {
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
