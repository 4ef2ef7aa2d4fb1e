import Testing
import UDPDTransport

@Suite("udpd's own listeners, as the workers test datagram sources against them")
struct OwnListenerSetTests {
    static func endpoint(_ address: String, _ port: UInt16) -> IPEndpoint { IPEndpoint(address: address, port: port)! }

    /// Wildcard listeners on 7000 (both families), one bound to 192.0.2.10:7001, and many others on higher ports,
    /// on a host whose own addresses are 192.0.2.10 and 2001:db8::10.
    static let set = OwnListenerSet(
        listening: [
            endpoint("0.0.0.0", 7000), endpoint("::", 7000), endpoint("192.0.2.10", 7001),
        ] + (8000..<9000).map { endpoint("198.51.100.1", UInt16($0)) },
        hostAddresses: [endpoint("192.0.2.10", 0), endpoint("2001:db8::10", 0)]
    )

    @Test("a wildcard listener's port is its own from the loopback and the host's addresses, of its family")
    func wildcard() {
        #expect(Self.set.contains(Self.endpoint("127.0.0.1", 7000)))
        #expect(Self.set.contains(Self.endpoint("127.3.2.1", 7000)))
        #expect(Self.set.contains(Self.endpoint("::1", 7000)))
        #expect(Self.set.contains(Self.endpoint("192.0.2.10", 7000)))
        #expect(Self.set.contains(Self.endpoint("2001:db8::10", 7000)))
    }

    @Test("a client elsewhere that uses a listening port as its source is not udpd")
    func remoteClientOnAnOwnPort() {
        #expect(!Self.set.contains(Self.endpoint("203.0.113.5", 7000)))
        #expect(!Self.set.contains(Self.endpoint("2001:db8::99", 7000)))
        #expect(!Self.set.contains(Self.endpoint("198.51.100.2", 8500)))
    }

    @Test("a bound listener is its own address and port only")
    func bound() {
        #expect(Self.set.contains(Self.endpoint("192.0.2.10", 7001)))
        #expect(!Self.set.contains(Self.endpoint("127.0.0.1", 7001)))
        #expect(Self.set.contains(Self.endpoint("198.51.100.1", 8000)))
        #expect(Self.set.contains(Self.endpoint("198.51.100.1", 8999)))
        #expect(!Self.set.contains(Self.endpoint("198.51.100.1", 9000)))
    }

    @Test("ports no listener has are never udpd's, whatever the address")
    func otherPorts() {
        #expect(!Self.set.contains(Self.endpoint("127.0.0.1", 6999)))
        #expect(!Self.set.contains(Self.endpoint("192.0.2.10", 0)))
        #expect(!OwnListenerSet.empty.contains(Self.endpoint("127.0.0.1", 7000)))
    }
}
