import Testing
import UDPDTestSupport
import UDPDTransport

/// Answers every datagram with itself, as the echo service does, without its reflection rules.
struct PlainEcho: DatagramHandler {
    func handle(
        _ buffer: UnsafeMutableRawBufferPointer,
        length: Int,
        peer: IPEndpoint,
        destination: DatagramDestination,
        replier: DatagramReplier
    ) -> DatagramVerdict {
        .reply(length: length)
    }
}

/// A socket served by its own worker pool, closed when the test ends.
final class TestServer {
    let sockets: [UDPListenerSocket]
    let counters = ListenerCounters()
    let pool: UDPWorkerPool
    let registration: UDPPoolRegistration

    init(
        _ endpoint: IPEndpoint,
        options: ListenerSocketOptions = ListenerSocketOptions(),
        settings: UDPWorkerSettings = UDPWorkerSettings(),
        workers: Int = 1
    ) throws {
        sockets = try UDPListenerSocket.bindGroup(endpoint, count: workers, options: options)
        pool = try UDPWorkerPool(threadCount: workers, settings: settings)
        registration = try pool.add(sockets, slot: DatagramHandlerSlot(PlainEcho()), counters: counters)
    }

    var socket: UDPListenerSocket { sockets[0] }
    var port: UInt16 { socket.localEndpoint.port }

    deinit {
        pool.remove(registration)
        pool.shutdown()
        sockets.forEach { $0.close() }
    }
}

@Suite("The reply leaves from the address the request was sent to")
struct ReplySourceTests {
    @Test("a wildcard IPv4 socket with IP_PKTINFO answers 127.0.0.2 from 127.0.0.2")
    func wildcardIPv4AnswersFromDestination() throws {
        try #require(hasSecondLoopbackAddress, "127.0.0.2 is not a local address on this host")
        let server = try TestServer(.wildcard(.ipv4, port: 0))
        #expect(server.socket.replySource == .pktinfo || server.socket.replySource == .recvdstaddr)
        for address in ["127.0.0.1", "127.0.0.2"] {
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: address, port: server.port)!)
            try client.send("hello \(address)")
            #expect(client.receiveText() == "hello \(address)", "no reply from \(address)")
        }
        #expect(eventually { server.counters.snapshot().sentPackets == 2 })
    }

    @Test("without destination info the kernel picks the source and a connected client loses the reply")
    func kernelChosenSourceIsLost() throws {
        try #require(hasSecondLoopbackAddress, "127.0.0.2 is not a local address on this host")
        let server = try TestServer(
            .wildcard(.ipv4, port: 0),
            options: ListenerSocketOptions(withoutDestinationInfo: true)
        )
        #expect(server.socket.replySource == .kernel)
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.2", port: server.port)!,
            timeoutMilliseconds: 500
        )
        try client.send("lost")
        #expect(client.receive() == nil, "the kernel-chosen source reached a connected client")
        // The server did answer, from 127.0.0.1: that is what the connected socket filtered out.
        #expect(eventually { server.counters.snapshot().sentPackets == 1 })
    }

    @Test("a wildcard IPv6 socket answers ::1 through IPV6_PKTINFO")
    func wildcardIPv6() throws {
        try #require(hasIPv6Loopback, "::1 is not available on this host")
        let server = try TestServer(.wildcard(.ipv6, port: 0))
        #expect(server.socket.replySource == .pktinfo)
        let client = try ConnectedUDPClient(from: "::1", to: IPEndpoint(address: "::1", port: server.port)!)
        try client.send("six")
        #expect(client.receiveText() == "six")
    }

    @Test("a socket bound to one address says so and answers from it")
    func boundSocket() throws {
        let server = try TestServer(IPEndpoint(address: "127.0.0.1", port: 0)!)
        #expect(server.socket.replySource == .bound)
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: server.socket.localEndpoint)
        try client.send("bound")
        #expect(client.receiveText() == "bound")
    }

    @Test("a truncated datagram is dropped and counted, never answered")
    func truncatedIsDropped() throws {
        let server = try TestServer(
            .wildcard(.ipv4, port: 0),
            settings: UDPWorkerSettings(batchSize: 4, bufferSize: 16)
        )
        let client = try ConnectedUDPClient(
            from: "127.0.0.1",
            to: IPEndpoint(address: "127.0.0.1", port: server.port)!,
            timeoutMilliseconds: 500
        )
        try client.send([UInt8](repeating: 7, count: 100))
        #expect(client.receive() == nil)
        try client.send("short")
        #expect(client.receiveText() == "short")
        #expect(eventually { server.counters.snapshot().receivedPackets == 2 })
        #expect(server.counters.snapshot().drops[.truncated] == 1)
    }

    @Test("a port held by another socket fails with addressInUse, naming the endpoint")
    func portInUse() throws {
        let first = try UDPListenerSocket.bind(.wildcard(.ipv4, port: 0))
        defer { first.close() }
        let endpoint = IPEndpoint.wildcard(.ipv4, port: first.localEndpoint.port)
        #expect {
            _ = try UDPListenerSocket.bind(endpoint)
        } throws: { error in
            guard let error = error as? BindError else { return false }
            return error.code == .addressInUse && error.description.contains("udp 0.0.0.0:\(endpoint.port)")
        }
    }

    @Test("a batch of requests from many clients is answered in full")
    func batchOfClients() throws {
        let server = try TestServer(.wildcard(.ipv4, port: 0))
        let clients = try (0..<40).map { _ in
            try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: server.port)!)
        }
        for (index, client) in clients.enumerated() { try client.send("n\(index)") }
        for (index, client) in clients.enumerated() { #expect(client.receiveText() == "n\(index)") }
    }

    @Test("removing a socket from the pool is prompt and leaves it open; shutdown is prompt")
    func removalIsPrompt() throws {
        let socket = try UDPListenerSocket.bind(.wildcard(.ipv4, port: 0))
        defer { socket.close() }
        let pool = try UDPWorkerPool(threadCount: 2)
        let registration = try pool.add([socket], slot: DatagramHandlerSlot(PlainEcho()), counters: ListenerCounters())
        let clock = ContinuousClock()
        #expect(clock.measure { pool.remove(registration) } < .milliseconds(500))
        #expect(!socket.descriptor.isClosed)
        #expect(clock.measure { pool.shutdown() } < .milliseconds(500))
    }

    @Test("four workers on one port share its datagrams and all answer from the right address")
    func reusePortGroup() throws {
        try #require(hasSecondLoopbackAddress, "127.0.0.2 is not a local address on this host")
        let server = try TestServer(.wildcard(.ipv4, port: 0), workers: 4)
        #expect(server.sockets.count == 4)
        #expect(Set(server.sockets.map(\.localEndpoint.port)).count == 1)
        let clients = try (0..<64).map { _ in
            try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.2", port: server.port)!)
        }
        for (index, client) in clients.enumerated() { try client.send("w\(index)") }
        for (index, client) in clients.enumerated() { #expect(client.receiveText() == "w\(index)") }
        #expect(eventually { server.counters.snapshot().sentPackets == 64 })
    }

    @Test("every socket of a worker group receives its share of the datagrams")
    func reusePortGroupSpreads() throws {
        let sockets = try UDPListenerSocket.bindGroup(.wildcard(.ipv4, port: 0), count: 2)
        defer { sockets.forEach { $0.close() } }
        let pool = try UDPWorkerPool(threadCount: 2)
        defer { pool.shutdown() }
        let counters = [ListenerCounters(), ListenerCounters()]
        let registrations = try zip(sockets, counters).map { socket, counters in
            try pool.add([socket], slot: DatagramHandlerSlot(PlainEcho()), counters: counters)
        }
        defer { registrations.forEach { pool.remove($0) } }
        // 64 clients on 64 source ports: the kernel's hash sends every one of them to the same member with a
        // probability of 2^-63 if both sockets are in the group.
        let clients = try (0..<64).map { _ in
            try ConnectedUDPClient(
                from: "127.0.0.1",
                to: IPEndpoint(address: "127.0.0.1", port: sockets[0].localEndpoint.port)!
            )
        }
        for (index, client) in clients.enumerated() { try client.send("s\(index)") }
        for (index, client) in clients.enumerated() { #expect(client.receiveText() == "s\(index)") }
        let received = counters.map { $0.snapshot().receivedPackets }
        #expect(received.reduce(0, +) == 64)
        #expect(received.allSatisfy { $0 > 0 }, "one member of the group got nothing: \(received)")
    }

    @Test("a worker group never shares its port with a socket that was there first")
    func reusePortGroupRefusesForeignHolder() throws {
        let holder = try UDPListenerSocket.bind(IPEndpoint(address: "127.0.0.1", port: 0)!)
        defer { holder.close() }
        #expect(throws: BindError.self) {
            _ = try UDPListenerSocket.bindGroup(.wildcard(.ipv4, port: holder.localEndpoint.port), count: 2)
        }
    }
}
