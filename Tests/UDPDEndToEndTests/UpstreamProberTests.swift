import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing
import UDPDKerberos
import UDPDServices
import UDPDTestSupport
import UDPDTransport

/// A UDP socket on 127.0.0.1 that answers every datagram with what `answer` makes of it (nothing for `nil`): a
/// stand-in upstream that answers garbage, or never answers at all (a black hole: bound, never replying).
final class ScriptedDatagramServer: Sendable {
    /// A count shared with the channel handler.
    final class Count: Sendable {
        let value = Mutex(0)
    }

    let endpoint: IPEndpoint
    private let count = Count()
    private let channel: any Channel

    /// The datagrams received so far.
    var received: Int { count.value.withLock { $0 } }

    init(group: any EventLoopGroup, answer: @escaping @Sendable ([UInt8]) -> [UInt8]?) throws {
        let received = count
        channel = try DatagramBootstrap(group: group).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(Responder(answer: answer, received: received))
            }
        }.bind(host: "127.0.0.1", port: 0).wait()
        endpoint = IPEndpoint(address: "127.0.0.1", port: UInt16(channel.localAddress!.port!))!
    }

    deinit { channel.close(promise: nil) }

    private final class Responder: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let answer: @Sendable ([UInt8]) -> [UInt8]?
        let received: Count

        init(answer: @escaping @Sendable ([UInt8]) -> [UInt8]?, received: Count) {
            self.answer = answer
            self.received = received
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            received.value.withLock { $0 += 1 }
            guard let reply = answer(Array(envelope.data.readableBytesView)) else { return }
            let out = AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: reply))
            context.writeAndFlush(wrapOutboundOut(out), promise: nil)
        }
    }
}

@Suite("Upstream probes: krb5 and dns health checks against real servers", .serialized)
final class UpstreamProberTests {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    let logger = Logger(label: "udpd.test.prober")

    deinit { try? group.syncShutdownGracefully() }

    /// Runs a prober over `upstreams` until it has reported `count` results (or `within` passes), stops it, and
    /// returns the results with when each came, measured from the start.
    func probe(
        _ probe: UpstreamProbe,
        _ upstreams: [IPEndpoint],
        count: Int,
        interval: Duration = .seconds(10),
        timeout: Duration = .seconds(2),
        realm: String = UpstreamProber.defaultRealm,
        within: Duration = .seconds(10)
    ) throws -> [(result: UpstreamProbeResult, after: Duration)] {
        let reports = Mutex<[(result: UpstreamProbeResult, after: Duration)]>([])
        let started = ContinuousClock.now
        let prober = UpstreamProber(
            probe: probe,
            upstreams: upstreams,
            interval: interval,
            timeout: timeout,
            eventLoop: group.next(),
            logger: logger,
            realm: realm
        ) { result in
            let after = ContinuousClock.now - started
            reports.withLock { $0.append((result, after)) }
        }
        prober.start()
        prober.start()  // idempotent: still one round at once
        _ = eventually(timeout: within) { reports.withLock { $0.count >= count } }
        try prober.stop().wait()
        return reports.withLock { $0 }
    }

    @Test(
        "krb5 against a real MIT krb5kdc: a KRB-ERROR for the unknown principal, good, whatever the realm named",
        .enabled(if: KerberosRealm.isInstalled, "MIT Kerberos is not installed (Debian: krb5-kdc krb5-admin-server)")
    )
    func krb5AgainstMITKDC() throws {
        let realm = try KerberosRealm(password: "unused-password")
        let kdc = IPEndpoint(address: "127.0.0.1", port: realm.kdcPort)!
        for name in [UpstreamProber.defaultRealm, KerberosRealm.realm] {
            let reports = try probe(.krb5, [kdc], count: 1, realm: name)
            #expect(reports.count == 1, "realm \(name): \(reports)")
            let roundTrip = try #require(
                reports.first?.result.roundTrip,
                "realm \(name): no good answer\n\(realm.logs)"
            )
            #expect(roundTrip > .zero && roundTrip < .seconds(2))
            #expect(reports.first?.result.upstream == 0)
        }
        // The KDC saw the probes as what they are: a request for a principal it does not have.
        #expect(realm.logs.contains("CLIENT_NOT_FOUND: \(UpstreamProbe.krb5PrincipalPrefix)"), "\(realm.logs)")
    }

    @Test("krb5: any KRB-ERROR counts as good; garbage and an echoed request do not (and fail at the timeout)")
    func krb5Answers() throws {
        let error = KerberosErrorMessage(
            errorCode: KerberosErrorMessage.wrongRealm,
            serverTime: 0,
            realm: "ELSEWHERE",
            server: .ticketGrantingService(realm: "ELSEWHERE")
        ).encoded
        let kdc = try ScriptedDatagramServer(group: group) { _ in error }
        let garbage = try ScriptedDatagramServer(group: group) { _ in Array("HTTP/1.1 400 Bad Request\r\n".utf8) }
        let echo = try ScriptedDatagramServer(group: group) { $0 }
        let truncated = try ScriptedDatagramServer(group: group) { _ in Array(error.dropLast()) }
        let reports = try probe(
            .krb5,
            [kdc.endpoint, garbage.endpoint, echo.endpoint, truncated.endpoint],
            count: 4,
            timeout: .milliseconds(500)
        )
        let byUpstream = Dictionary(uniqueKeysWithValues: reports.map { ($0.result.upstream, $0) })
        #expect(byUpstream[0]?.result.roundTrip != nil)
        for bad in 1...3 {
            #expect(byUpstream[bad]?.result.roundTrip == nil, "upstream \(bad): \(reports)")
            #expect(
                (byUpstream[bad]?.after ?? .zero) >= .milliseconds(450),
                "upstream \(bad) failed before the timeout"
            )
        }
        #expect([garbage, echo, truncated].allSatisfy { $0.received == 1 })
    }

    @Test("a closed port fails at once (the ICMP error), long before the timeout; for krb5 and dns")
    func closedPort() throws {
        let closed = IPEndpoint(address: "127.0.0.1", port: try probeFreePort())!
        for kind in [UpstreamProbe.krb5, .dns] {
            let reports = try probe(kind, [closed], count: 1, timeout: .seconds(5))
            #expect(reports.count == 1)
            #expect(reports.first?.result.roundTrip == nil)
            #expect((reports.first?.after ?? .seconds(99)) < .seconds(1), "\(kind): \(reports)")
        }
    }

    @Test("a black hole fails after the timeout, and a round skips an upstream whose probe is still in flight")
    func blackHole() throws {
        let hole = try ScriptedDatagramServer(group: group) { _ in nil }
        let reports = try probe(
            .krb5,
            [hole.endpoint],
            count: 2,
            interval: .milliseconds(100),
            timeout: .milliseconds(700),
            within: .milliseconds(1700)
        )
        #expect(reports.count == 2, "\(reports)")
        #expect(reports.allSatisfy { $0.result.roundTrip == nil })
        #expect((reports.first?.after ?? .zero) >= .milliseconds(650))
        // One probe in flight at a time: about 1.6 s of 100 ms rounds sent two probes, not sixteen.
        #expect(hole.received <= 3, "\(hole.received) probes sent")
    }

    @Test(
        "dns against a real dnsmasq: the answer to `. NS` with the query's ID is good",
        .enabled(if: Dnsmasq.isInstalled, "dnsmasq is not installed (Debian: dnsmasq-base)")
    )
    func dnsAgainstDnsmasq() throws {
        let dnsmasq = try Dnsmasq()
        let closed = IPEndpoint(address: "127.0.0.1", port: try probeFreePort())!
        let reports = try probe(.dns, [closed, dnsmasq.endpoint], count: 2)
        let byUpstream = Dictionary(uniqueKeysWithValues: reports.map { ($0.result.upstream, $0.result) })
        #expect(byUpstream[0] != nil && byUpstream[0]?.roundTrip == nil, "\(reports)")
        #expect(byUpstream[1]?.roundTrip != nil, "\(reports)")
    }

    @Test("dns: a response with another ID, or a query, does not count")
    func dnsAnswers() throws {
        let wrongID = try ScriptedDatagramServer(group: group) { query in
            [query[0] ^ 0xff, query[1], 0x80 | query[2]] + query.dropFirst(3)
        }
        let notResponse = try ScriptedDatagramServer(group: group) { $0 }
        let good = try ScriptedDatagramServer(group: group) { query in
            [query[0], query[1], 0x80 | query[2], 0x05] + query.dropFirst(4)  // REFUSED is still an answer
        }
        let reports = try probe(
            .dns,
            [wrongID.endpoint, notResponse.endpoint, good.endpoint],
            count: 3,
            timeout: .milliseconds(400)
        )
        let byUpstream = Dictionary(uniqueKeysWithValues: reports.map { ($0.result.upstream, $0.result) })
        #expect(byUpstream[0]?.roundTrip == nil && byUpstream[1]?.roundTrip == nil, "\(reports)")
        #expect(byUpstream[2]?.roundTrip != nil, "\(reports)")
    }

    @Test("probes repeat every interval; after stop() no report comes and no probe is sent")
    func stopEndsEverything() throws {
        let kdc = try ScriptedDatagramServer(group: group) { _ in
            DERNode.application(11, .sequence([.field(0, .integer(5)), .field(1, .integer(11))])).encoded
        }
        let hole = try ScriptedDatagramServer(group: group) { _ in nil }
        let reports = Mutex(0)
        let prober = UpstreamProber(
            probe: .krb5,
            upstreams: [kdc.endpoint, hole.endpoint],
            interval: .milliseconds(50),
            timeout: .seconds(5),
            eventLoop: group.next(),
            logger: logger
        ) { result in
            if result.upstream == 1 { Issue.record("the black hole's probe was reported: \(result)") }
            #expect(result.roundTrip != nil)
            reports.withLock { $0 += 1 }
        }
        prober.start()
        #expect(eventually(timeout: .seconds(5)) { reports.withLock { $0 } >= 5 })
        try prober.stop().wait()
        let atStop = reports.withLock { $0 }
        let sentAtStop = kdc.received
        usleep(300_000)
        #expect(reports.withLock { $0 } == atStop)
        #expect(kdc.received == sentAtStop)
        prober.start()  // a stopped prober stays stopped
        usleep(200_000)
        #expect(kdc.received == sentAtStop)
    }
}
