import Foundation
import UDPDTransport

#if canImport(Glibc)
import Glibc
#endif

/// Sends UDP datagrams with a source address and port of the test's choosing, through a raw socket (IPPROTO_RAW,
/// which includes the IP header): what an attacker does to make one service answer another. Needs root.
public enum ForgedDatagram {
    /// Sends `payload` from `source` to `destination` (both IPv4 or both IPv6), as one datagram with a header built
    /// here. Throws when the raw socket cannot be opened (not root) or the kernel refuses the packet.
    public static func send(_ payload: [UInt8], from source: IPEndpoint, to destination: IPEndpoint) throws {
        guard source.family == destination.family else { throw TestFailure("forged datagram: families differ") }
        let family = source.family
        let descriptor = socket(family.socketDomain, CInt(SOCK_RAW.rawValue), CInt(IPPROTO_RAW))
        guard descriptor >= 0 else { throw TestFailure("raw socket: errno \(errno) (root needed)") }
        defer { close(descriptor) }
        let packet =
            family == .ipv4 ? ipv4Packet(payload, source, destination) : ipv6Packet(payload, source, destination)
        // The port of the destination address must be 0 for a raw socket: the UDP header holds the real one.
        var target = destination
        target.port = 0
        let sent = packet.withUnsafeBytes { bytes in
            target.withSockAddr { address, length in
                sendto(descriptor, bytes.baseAddress, bytes.count, 0, address, length)
            }
        }
        guard sent == packet.count else { throw TestFailure("raw sendto: errno \(errno)") }
    }

    private static func ipv4Packet(_ payload: [UInt8], _ source: IPEndpoint, _ destination: IPEndpoint) -> [UInt8] {
        let total = 20 + 8 + payload.count
        var header: [UInt8] = [0x45, 0, UInt8(total >> 8), UInt8(total & 0xff), 0, 0, 0x40, 0, 64, 17, 0, 0]
        header += addressBytes(source) + addressBytes(destination)
        // The kernel fills in the IP header's checksum; a UDP checksum of 0 means "none" over IPv4.
        return header + udpHeader(payload, source, destination, checksum: 0) + payload
    }

    private static func ipv6Packet(_ payload: [UInt8], _ source: IPEndpoint, _ destination: IPEndpoint) -> [UInt8] {
        let length = 8 + payload.count
        var header: [UInt8] = [0x60, 0, 0, 0, UInt8(length >> 8), UInt8(length & 0xff), 17, 64]
        header += addressBytes(source) + addressBytes(destination)
        // IPv6 requires the UDP checksum, over a pseudo-header of both addresses, the length and the protocol.
        var pseudo = addressBytes(source) + addressBytes(destination)
        pseudo += [0, 0, UInt8(length >> 8), UInt8(length & 0xff), 0, 0, 0, 17]
        pseudo += udpHeader(payload, source, destination, checksum: 0) + payload
        var checksum = internetChecksum(pseudo)
        if checksum == 0 { checksum = 0xffff }
        return header + udpHeader(payload, source, destination, checksum: checksum) + payload
    }

    private static func udpHeader(
        _ payload: [UInt8],
        _ source: IPEndpoint,
        _ destination: IPEndpoint,
        checksum: UInt16
    ) -> [UInt8] {
        let length = 8 + payload.count
        return [
            UInt8(source.port >> 8), UInt8(source.port & 0xff),
            UInt8(destination.port >> 8), UInt8(destination.port & 0xff),
            UInt8(length >> 8), UInt8(length & 0xff),
            UInt8(checksum >> 8), UInt8(checksum & 0xff),
        ]
    }

    /// The address's bytes in network order: 4 for IPv4, 16 for IPv6.
    private static func addressBytes(_ endpoint: IPEndpoint) -> [UInt8] {
        let bits = endpoint.addressBits
        let all =
            (0..<8).map { UInt8(truncatingIfNeeded: bits.high >> (56 - 8 * UInt64($0))) }
            + (0..<8).map { UInt8(truncatingIfNeeded: bits.low >> (56 - 8 * UInt64($0))) }
        return endpoint.family == .ipv4 ? Array(all[12..<16]) : all
    }

    /// The one's-complement sum of 16-bit words (RFC 1071), complemented.
    private static func internetChecksum(_ bytes: [UInt8]) -> UInt16 {
        var sum: UInt32 = 0
        var index = 0
        while index + 1 < bytes.count {
            sum += UInt32(bytes[index]) << 8 | UInt32(bytes[index + 1])
            index += 2
        }
        if index < bytes.count { sum += UInt32(bytes[index]) << 8 }
        while sum >> 16 != 0 { sum = (sum & 0xffff) + (sum >> 16) }
        return ~UInt16(sum)
    }
}
