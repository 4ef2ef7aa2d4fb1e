import UDPDTransport

/// A PROXY protocol version 2 header (HAProxy's `proxy-protocol.txt`, section 2.2), as `proxy-protocol: v2` puts it
/// before every datagram a forward sends upstream and at the start of every TCP connection it relays: the binary
/// signature, command PROXY, the family and transport, then the client's address and port as the source and the
/// local address and port the client asked as the destination. No TLVs.
///
/// Built once per UDP session or TCP relay (both ends are fixed for its life), so sending it costs no allocation
/// per datagram. A client that reached an IPv6 socket from an IPv4 address (`::ffff:a.b.c.d`) is written as IPv4
/// when the local address is IPv4 too; otherwise both are written as IPv6, IPv4 ones in their mapped form, since a
/// header carries one family.
///
/// `Sendable`: a value.
public struct ProxyProtocolHeader: Sendable, Hashable {
    /// The transport byte's low nibble.
    public enum Transport: UInt8, Sendable {
        /// TCP.
        case stream = 0x1
        /// UDP.
        case datagram = 0x2
    }

    /// The 12-byte signature every version 2 header starts with.
    public static let signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    /// Version 2, command PROXY.
    static let versionAndCommand: UInt8 = 0x21

    /// The header: 28 bytes for IPv4, 52 for IPv6.
    public let bytes: [UInt8]

    /// The header for a client at `client` that asked `local`, over `transport`.
    public init(client: IPEndpoint, local: IPEndpoint, transport: Transport) {
        let source = client.addressBits
        let destination = local.addressBits
        let ipv4 = source.isIPv4 && destination.isIPv4
        var bytes = Self.signature
        bytes.reserveCapacity(ipv4 ? 28 : 52)
        bytes.append(Self.versionAndCommand)
        bytes.append((ipv4 ? 0x10 : 0x20) | transport.rawValue)
        let addressLength: UInt16 = ipv4 ? 12 : 36
        bytes.append(UInt8(addressLength >> 8))
        bytes.append(UInt8(addressLength & 0xFF))
        for address in [source, destination] {
            if ipv4 {
                Self.append(address.low & 0xFFFF_FFFF, count: 4, to: &bytes)
            } else {
                Self.append(address.high, count: 8, to: &bytes)
                Self.append(address.low, count: 8, to: &bytes)
            }
        }
        Self.append(UInt64(client.port), count: 2, to: &bytes)
        Self.append(UInt64(local.port), count: 2, to: &bytes)
        self.bytes = bytes
    }

    /// The low `count` bytes of `value`, most significant first.
    private static func append(_ value: UInt64, count: Int, to bytes: inout [UInt8]) {
        for index in stride(from: count - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: value >> (8 * index)))
        }
    }
}
