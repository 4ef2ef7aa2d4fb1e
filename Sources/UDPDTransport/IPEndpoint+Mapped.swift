import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension IPEndpoint {
    /// The endpoint with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how a dual-stack IPv6 socket reports an IPv4
    /// peer) written as the IPv4 endpoint it stands for, so that logs, status and `allow`/`deny` see an IPv4 client;
    /// any other endpoint unchanged. Costs no allocation (it runs once per datagram).
    @inline(__always)
    public var unmappingIPv4: IPEndpoint {
        guard family == .ipv6 else { return self }
        let bits = addressBits
        guard bits.isIPv4 else { return self }
        return IPEndpoint(v4: in_addr(s_addr: UInt32(truncatingIfNeeded: bits.low).bigEndian), port: port)
    }
}
