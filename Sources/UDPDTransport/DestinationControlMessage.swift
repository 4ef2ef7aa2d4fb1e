import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a datagram's destination from the control messages recvmsg returned, and writes the control message that
/// makes a reply leave from it. This is the whole of udpd's answer to the wrong-source-address problem.
enum DestinationControlMessage {
    /// Bytes of control buffer a slot needs for either direction.
    static let capacity = 64

    /// The destination of a received datagram, from its IP_PKTINFO, IP_RECVDSTADDR or IPV6_PKTINFO message.
    static func read(from message: UnsafeMutablePointer<msghdr>, localPort: UInt16) -> DatagramDestination? {
        var header = cudpd_cmsg_firsthdr(message)
        while let current = header {
            let level = current.pointee.cmsg_level
            let type = current.pointee.cmsg_type
            let data = UnsafeRawPointer(cudpd_cmsg_data(current))
            if level == CInt(IPPROTO_IP) && cudpd_ip_pktinfo != 0 && type == cudpd_ip_pktinfo {
                let info = data.loadUnaligned(as: cudpd_in_pktinfo.self)
                return DatagramDestination(
                    endpoint: IPEndpoint(v4: info.ipi_spec_dst, port: localPort),
                    interfaceIndex: UInt32(info.ipi_ifindex)
                )
            }
            if level == CInt(IPPROTO_IP) && cudpd_ip_recvdstaddr != 0 && type == cudpd_ip_recvdstaddr {
                let address = data.loadUnaligned(as: in_addr.self)
                return DatagramDestination(endpoint: IPEndpoint(v4: address, port: localPort), interfaceIndex: 0)
            }
            if level == CInt(IPPROTO_IPV6) && type == cudpd_ipv6_pktinfo {
                let info = data.loadUnaligned(as: cudpd_in6_pktinfo.self)
                // A dual-stack socket reports an IPv4 destination as ::ffff:a.b.c.d: hand it on as IPv4, whose
                // IP_PKTINFO reply message Linux takes on an IPv6 socket too.
                let endpoint = IPEndpoint(v6: info.ipi6_addr, scope: 0, port: localPort).unmappingIPv4
                let scoped =
                    endpoint.isLinkLocal
                    ? IPEndpoint(v6: info.ipi6_addr, scope: UInt32(info.ipi6_ifindex), port: localPort) : endpoint
                return DatagramDestination(endpoint: scoped, interfaceIndex: UInt32(info.ipi6_ifindex))
            }
            header = cudpd_cmsg_nxthdr(message, current)
        }
        return nil
    }

    /// Writes into `control` the message that sends a reply from `source`; returns the bytes used (0: none needed).
    static func write(
        source: DatagramDestination,
        replySource: ReplySource,
        into control: UnsafeMutableRawPointer
    ) -> Int {
        switch replySource {
        case .bound, .kernel, .connection:
            return 0
        case .pktinfo:
            if let address = source.endpoint.inAddr {
                var info = cudpd_in_pktinfo()
                info.ipi_ifindex = 0
                info.ipi_spec_dst = address
                return put(info, level: CInt(IPPROTO_IP), type: cudpd_ip_pktinfo, into: control)
            }
            guard let address = source.endpoint.in6Addr else { return 0 }
            var info = cudpd_in6_pktinfo()
            info.ipi6_addr = address
            info.ipi6_ifindex = source.endpoint.isLinkLocal ? source.interfaceIndex : 0
            return put(info, level: CInt(IPPROTO_IPV6), type: cudpd_ipv6_pktinfo, into: control)
        case .recvdstaddr:
            guard let address = source.endpoint.inAddr else { return 0 }
            return put(address, level: CInt(IPPROTO_IP), type: cudpd_ip_sendsrcaddr, into: control)
        }
    }

    private static func put<Value>(
        _ value: Value,
        level: CInt,
        type: CInt,
        into control: UnsafeMutableRawPointer
    ) -> Int {
        let space = cudpd_cmsg_space(MemoryLayout<Value>.size)
        precondition(space <= capacity, "control buffer too small")
        memset(control, 0, space)
        var message = msghdr()
        message.msg_control = control
        message.msg_controllen = numericCast(space)
        guard let header = cudpd_cmsg_firsthdr(&message) else { return 0 }
        header.pointee.cmsg_level = level
        header.pointee.cmsg_type = type
        header.pointee.cmsg_len = numericCast(cudpd_cmsg_len(MemoryLayout<Value>.size))
        withUnsafeBytes(of: value) { bytes in
            UnsafeMutableRawPointer(cudpd_cmsg_data(header)).copyMemory(
                from: bytes.baseAddress!,
                byteCount: bytes.count
            )
        }
        return space
    }
}
