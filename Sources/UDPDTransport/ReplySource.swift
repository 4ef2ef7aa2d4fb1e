/// How a listener makes its replies leave from the address the client asked; shown as `reply_source` in status.
public enum ReplySource: String, Sendable, Hashable {
    /// A wildcard UDP socket with IP_PKTINFO (IPv4) or IPV6_PKTINFO (IPv6): every reply names its source.
    case pktinfo
    /// A wildcard IPv4 UDP socket with IP_RECVDSTADDR and IP_SENDSRCADDR (the BSDs).
    case recvdstaddr
    /// The socket is bound to one address, so every reply leaves from it.
    case bound
    /// A wildcard UDP socket with neither option: the kernel picks the source, which is wrong on multi-homed hosts.
    case kernel
    /// A TCP listener: replies always leave from the connection's own local address.
    case connection
}
