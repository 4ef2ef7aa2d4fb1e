import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IP address as 128 bits, IPv4 written as IPv4-mapped IPv6 (`::ffff:a.b.c.d`), so that prefix checks and
/// per-source tables need one comparison and no allocation whatever the family.
public struct IPAddressBits: Sendable, Hashable {
    /// The first 64 bits, most significant first.
    public var high: UInt64
    /// The last 64 bits.
    public var low: UInt64

    /// Creates an address from its two halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Whether the address is IPv4 (IPv4-mapped).
    public var isIPv4: Bool { high == 0 && low >> 32 == 0xffff }

    /// Whether the first `length` bits equal those of `network`.
    @inlinable
    public func hasPrefix(_ network: IPAddressBits, length: Int) -> Bool {
        if length <= 0 { return true }
        if length >= 128 { return self == network }
        if length <= 64 {
            let mask = length == 64 ? UInt64.max : ~(UInt64.max >> UInt64(length))
            return high & mask == network.high & mask
        }
        let mask = ~(UInt64.max >> UInt64(length - 64))
        return high == network.high && low & mask == network.low & mask
    }
}

extension IPEndpoint {
    /// The endpoint's address as 128 bits (IPv4 mapped); the scope of a link-local IPv6 address is not part of it.
    public var addressBits: IPAddressBits {
        switch storage {
        case .v4(let sin):
            return IPAddressBits(high: 0, low: 0xffff_0000_0000 | UInt64(UInt32(bigEndian: sin.sin_addr.s_addr)))
        case .v6(let sin6):
            return withUnsafeBytes(of: sin6.sin6_addr) { bytes in
                var high: UInt64 = 0
                var low: UInt64 = 0
                for index in 0..<8 { high = high << 8 | UInt64(bytes[index]) }
                for index in 8..<16 { low = low << 8 | UInt64(bytes[index]) }
                return IPAddressBits(high: high, low: low)
            }
        }
    }
}
