import UDPDTransport

/// The sources a built-in service never answers, because answering them starts an echo/chargen loop between two
/// services or turns udpd into a reflector for spoofed traffic.
///
/// Refused: source port 0; a multicast, broadcast or unspecified source address; and a source port of a UDP
/// service that answers whatever it receives, or answers more than it receives (the amplification vectors of
/// US-CERT TA14-017A and later reports):
///
/// | port | service | port | service |
/// |---|---|---|---|
/// | 7 | echo | 623 | IPMI / ASF-RMCP |
/// | 9 | discard | 1194 | OpenVPN |
/// | 13 | daytime | 1434 | MS-SQL browser |
/// | 17 | qotd | 1701 | L2TP |
/// | 19 | chargen | 1900 | SSDP |
/// | 37 | time | 3283 | Apple Remote Desktop |
/// | 53 | DNS | 3478 | STUN |
/// | 69 | TFTP | 3702 | WS-Discovery |
/// | 88 | Kerberos | 5060 | SIP |
/// | 111 | portmap | 5353 | mDNS |
/// | 123 | NTP | 5683 | CoAP |
/// | 137, 138 | NetBIOS | 6881 | BitTorrent DHT |
/// | 161, 162 | SNMP | 10001 | Ubiquiti discovery |
/// | 177 | XDMCP | 11211 | memcached |
/// | 389 | CLDAP | 17185 | VxWorks WDB |
/// | 427 | SLP | 26000, 27015 | game server queries |
/// | 500 | IKE | 32414 | Plex discovery |
/// | 514 | syslog | 37810 | DHDiscover |
/// | 520 | RIP | 47808 | BACnet |
///
/// The ports are kept in a 65 536-bit table, so the check costs one load whatever the list's length.
///
/// Beyond these, no handler ever sees a datagram from one of udpd's own listeners: the worker threads drop it first
/// (``OwnListenerSet``), whatever the service, since a loop between two services can start on any port.
public enum ReflectionGuard {
    /// The refused source ports, in ascending order.
    public static let refusedSourcePorts: [UInt16] = [
        7, 9, 13, 17, 19, 37, 53, 69, 88, 111, 123, 137, 138, 161, 162, 177, 389, 427, 500, 514, 520, 623, 1194,
        1434, 1701, 1900, 3283, 3478, 3702, 5060, 5353, 5683, 6881, 10001, 11211, 17185, 26000, 27015, 32414,
        37810, 47808,
    ]

    /// One bit per port: set when the port is refused.
    private static let refusedBits: [UInt64] = {
        var bits = [UInt64](repeating: 0, count: 1024)
        for port in refusedSourcePorts { bits[Int(port) >> 6] |= 1 << UInt64(port & 63) }
        return bits
    }()

    /// Whether `port` is a refused source port (port 0 included).
    public static func refuses(port: UInt16) -> Bool {
        port == 0 || refusedBits[Int(port) >> 6] & (1 << UInt64(port & 63)) != 0
    }

    /// Whether a datagram from `peer` must go unanswered.
    public static func refuses(_ peer: IPEndpoint) -> Bool {
        refuses(port: peer.port) || peer.isMulticast || peer.isBroadcastOrUnspecified
    }
}
