import UDPDTransport

/// The sources a built-in service never answers, because answering them starts an echo/chargen loop between two
/// services or turns udpd into a reflector for spoofed traffic.
public enum ReflectionGuard {
    /// UDP ports of services that answer whatever they receive, or answer more than they receive: echo 7,
    /// discard 9, daytime 13, qotd 17, chargen 19, time 37, DNS 53, TFTP 69, portmap 111, NTP 123, NetBIOS 137 and
    /// 138, SNMP 161 and 162, CLDAP 389, IKE 500, syslog 514, RIP 520, SSDP 1900, mDNS 5353, memcached 11211.
    public static let refusedSourcePorts: Set<UInt16> = [
        7, 9, 13, 17, 19, 37, 53, 69, 111, 123, 137, 138, 161, 162, 389, 500, 514, 520, 1900, 5353, 11211,
    ]

    /// Whether a datagram from `peer` must go unanswered.
    @inlinable
    public static func refuses(_ peer: IPEndpoint) -> Bool {
        let port = peer.port
        return port == 0 || refusedSourcePorts.contains(port) || peer.isMulticast || peer.isBroadcastOrUnspecified
    }
}
