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

/// A wildcard socket served by a worker, closed when the test ends.
final class ServedSocket {
    let socket: UDPListenerSocket
    let counters = ListenerCounters()
    let worker: UDPWorker

    init(_ endpoint: IPEndpoint, options: UDPSocketOptions = UDPSocketOptions(),
         settings: UDPWorkerSettings = UDPWorkerSettings()) throws {
        socket = try UDPListenerSocket.bind(endpoint, options: options)
        worker = try UDPWorker(socket: socket, slot: DatagramHandlerSlot(PlainEcho()), counters: counters,
                               settings: settings, name: "test-worker")
    }

    var port: UInt16 { socket.localEndpoint.port }

    deinit {
        worker.stop()
        socket.close()
    }
}

@Suite("The reply leaves from the address the request was sent to")
struct ReplySourceTests {
    @Test("a wildcard IPv4 socket with IP_PKTINFO answers 127.0.0.2 from 127.0.0.2")
    func wildcardIPv4AnswersFromDestination() throws {
        try #require(hasSecondLoopbackAddress, "127.0.0.2 is not a local address on this host")
        let server = try ServedSocket(.wildcard(.ipv4, port: 0))
        #expect(server.socket.replySource == .pktinfo || server.socket.replySource == .recvdstaddr)
        for address in ["127.0.0.1", "127.0.0.2"] {
            let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: address, port: server.port)!)
            try client.send("hello \(address)")
            #expect(client.receiveText() == "hello \(address)", "no reply from \(address)")
        }
        #expect(server.counters.snapshot().sentPackets == 2)
    }

    @Test("without destination info the kernel picks the source and a connected client loses the reply")
    func kernelChosenSourceIsLost() throws {
        try #require(hasSecondLoopbackAddress, "127.0.0.2 is not a local address on this host")
        let server = try ServedSocket(.wildcard(.ipv4, port: 0), options: UDPSocketOptions(withoutDestinationInfo: true))
        #expect(server.socket.replySource == .kernel)
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.2", port: server.port)!,
                                            timeoutMilliseconds: 500)
        try client.send("lost")
        #expect(client.receive() == nil, "the kernel-chosen source reached a connected client")
        // The server did answer, from 127.0.0.1: that is what the connected socket filtered out.
        #expect(server.counters.snapshot().sentPackets == 1)
    }

    @Test("a wildcard IPv6 socket answers ::1 through IPV6_PKTINFO")
    func wildcardIPv6() throws {
        try #require(hasIPv6Loopback, "::1 is not available on this host")
        let server = try ServedSocket(.wildcard(.ipv6, port: 0))
        #expect(server.socket.replySource == .pktinfo)
        let client = try ConnectedUDPClient(from: "::1", to: IPEndpoint(address: "::1", port: server.port)!)
        try client.send("six")
        #expect(client.receiveText() == "six")
    }

    @Test("a socket bound to one address says so and answers from it")
    func boundSocket() throws {
        let server = try ServedSocket(IPEndpoint(address: "127.0.0.1", port: 0)!)
        #expect(server.socket.replySource == .bound)
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: server.socket.localEndpoint)
        try client.send("bound")
        #expect(client.receiveText() == "bound")
    }

    @Test("a truncated datagram is dropped and counted, never answered")
    func truncatedIsDropped() throws {
        let server = try ServedSocket(.wildcard(.ipv4, port: 0), settings: UDPWorkerSettings(batchSize: 4, bufferSize: 16))
        let client = try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: server.port)!,
                                            timeoutMilliseconds: 500)
        try client.send([UInt8](repeating: 7, count: 100))
        #expect(client.receive() == nil)
        try client.send("short")
        #expect(client.receiveText() == "short")
        let counters = server.counters.snapshot()
        #expect(counters.drops[.truncated] == 1)
        #expect(counters.receivedPackets == 2)
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
        let server = try ServedSocket(.wildcard(.ipv4, port: 0))
        let clients = try (0..<40).map { _ in
            try ConnectedUDPClient(from: "127.0.0.1", to: IPEndpoint(address: "127.0.0.1", port: server.port)!)
        }
        for (index, client) in clients.enumerated() { try client.send("n\(index)") }
        for (index, client) in clients.enumerated() { #expect(client.receiveText() == "n\(index)") }
    }

    @Test("stopping a worker is prompt and leaves the socket open")
    func stopIsPrompt() throws {
        let socket = try UDPListenerSocket.bind(.wildcard(.ipv4, port: 0))
        defer { socket.close() }
        let worker = try UDPWorker(socket: socket, slot: DatagramHandlerSlot(PlainEcho()), counters: ListenerCounters(),
                                   name: "stop-test")
        let clock = ContinuousClock()
        let elapsed = clock.measure { worker.stop() }
        #expect(elapsed < .milliseconds(500))
        #expect(!socket.descriptor.isClosed)
    }
}
