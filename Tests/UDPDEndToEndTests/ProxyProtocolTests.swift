import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// `proxy-protocol: v2` (issue 16): a test upstream that parses the header itself sees, before every datagram and at
/// the start of every TCP connection, the client's own address and port and the local address and port it asked;
/// clients see their replies unchanged.
@Suite("PROXY protocol v2 towards the upstream", .serialized)
struct ProxyProtocolTests {
    /// udpd forwarding UDP and TCP on `port` (on every address, both families) to `upstream`, with the header.
    static func forward(port: UInt16, to upstream: ProxyProtocolUpstream) throws -> UDPDProcess {
        let address = upstream.endpoint.addressText
        let host = upstream.endpoint.family == .ipv6 ? "[\(address)]" : address
        let udpd = try UDPDProcess(
            config: """
                services:
                  relay:
                    handler: forward
                    udp: \(port)
                    tcp: \(port)
                    upstream: "\(host):\(upstream.endpoint.port)"
                    proxy-protocol: v2
                """
        )
        try udpd.waitUntilReady()
        return udpd
    }

    /// How the upstream writes an endpoint: `ADDRESS port`.
    static func written(_ endpoint: IPEndpoint) -> String { "\(endpoint.addressText) \(endpoint.port)" }

    /// The clients' addresses to try, with the local address each asks: IPv4, a second IPv4 loopback address (the
    /// header names the one asked, not the one the kernel would pick), and IPv6.
    static var clientAddresses: [String] {
        var addresses = ["127.0.0.1"]
        if hasSecondLoopbackAddress { addresses.append("127.0.0.2") }
        if hasIPv6Loopback { addresses.append("::1") }
        return addresses
    }

    @Test("UDP: every datagram carries the client's and the asked address, IPv4 and IPv6; replies come back as sent")
    func datagrams() throws {
        let ports = try freePorts(2)
        let upstream = try ProxyProtocolUpstream(address: "127.0.0.1", port: ports[1])
        let udpd = try Self.forward(port: ports[0], to: upstream)
        var expected: [ProxyProtocolUpstream.Header] = []
        for address in Self.clientAddresses {
            let server = IPEndpoint(address: address, port: ports[0])!
            let client = try ConnectedUDPClient(from: address, to: server)
            let source = try client.descriptor.localEndpoint(context: "client")
            for index in 0..<3 {
                let request = "request \(index) from \(address)"
                try client.send(request)
                #expect(client.receiveText() == request, "via \(address)\n\(udpd.log)")
                expected.append(
                    .init(transport: "dgram", source: Self.written(source), destination: Self.written(server))
                )
            }
        }
        #expect(upstream.headers == expected)
        #expect(upstream.malformed == 0)
    }

    @Test("TCP: the connection starts with one header naming the client and the asked address, IPv4 and IPv6")
    func streams() throws {
        let ports = try freePorts(2)
        let upstream = try ProxyProtocolUpstream(address: "127.0.0.1", port: ports[1])
        let udpd = try Self.forward(port: ports[0], to: upstream)
        var expected: [ProxyProtocolUpstream.Header] = []
        for address in Self.clientAddresses {
            let server = IPEndpoint(address: address, port: ports[0])!
            let client = try TCPTestClient(from: address, to: server)
            let source = try client.descriptor.localEndpoint(context: "client")
            let line = "hello from \(address)\n"
            try client.send(line)
            #expect(String(decoding: client.receive(count: line.utf8.count), as: UTF8.self) == line, "\(udpd.log)")
            expected.append(
                .init(transport: "stream", source: Self.written(source), destination: Self.written(server))
            )
        }
        #expect(upstream.headers == expected)
        #expect(upstream.malformed == 0)
    }

    @Test("an IPv6 upstream gets the same headers; an IPv4 client is written as IPv4")
    func ipv6Upstream() throws {
        guard hasIPv6Loopback else {
            print("skipped: this host has no IPv6 loopback address")
            return
        }
        let ports = try freePorts(2)
        let upstream = try ProxyProtocolUpstream(address: "::1", port: ports[1])
        let udpd = try Self.forward(port: ports[0], to: upstream)
        let server = IPEndpoint(address: "127.0.0.1", port: ports[0])!
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: server)
        try client.send("over IPv4")
        #expect(client.receiveText() == "over IPv4", "\(udpd.log)")
        let source = try client.descriptor.localEndpoint(context: "client")
        let header = ProxyProtocolUpstream.Header(
            transport: "dgram",
            source: Self.written(source),
            destination: Self.written(server)
        )
        #expect(upstream.headers == [header])
    }
}
