import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// `rate-limit.over-limit: krb5-tcp` with a real MIT realm: a `kinit` over UDP whose source is over the limit is
/// answered by udpd with KRB_ERR_RESPONSE_TOO_BIG and completes at once over TCP, where `drop` makes it wait for its
/// UDP timeout. MIT's own library parses udpd's answer (its trace says so).
@Suite(
    "Kerberos over-limit answers: kinit moves to TCP",
    .serialized,
    .enabled(
        if: KerberosRealm.isInstalled,
        "MIT Kerberos is not installed (krb5-kdc, krb5-admin-server, krb5-user): the Kerberos tests are skipped"
    )
)
struct KerberosOverLimitTests {
    static let password = "over-Limit-1"

    /// A realm behind a udpd whose `kdc` service allows 1 request a second per source, with `overLimit`.
    struct Setup {
        let realm: KerberosRealm
        let udpd: UDPDProcess
        let port: UInt16

        init(overLimit: String) throws {
            realm = try KerberosRealm(password: KerberosOverLimitTests.password)
            var port = try probeFreePort()
            while port == realm.kdcPort || port == realm.kpasswdPort { port = try probeFreePort() }
            self.port = port
            udpd = try UDPDProcess(
                config: """
                    services:
                      kdc:
                        handler: forward
                        udp: \(port)
                        tcp: \(port)
                        bind: [127.0.0.1]
                        upstream: 127.0.0.1:\(realm.kdcPort)
                        framing: krb5
                        rate-limit: {per-source: 1/s, burst: 1, over-limit: \(overLimit)}
                    """
            )
            try udpd.waitUntilReady()
        }

        /// Spends 127.0.0.1's one token with a datagram that is no Kerberos request, then runs kinit over UDP from
        /// 127.0.0.1 at once; with how long kinit took.
        func kinitOverLimit() throws -> (result: CommandResult, trace: String, elapsed: Duration) {
            let server = IPEndpoint(address: "127.0.0.1", port: port)!
            let spender = try ConnectedUDPClient(from: "127.0.0.1", to: server, timeoutMilliseconds: 100)
            try spender.send("spend the token")
            let config = realm.clientConfig(kdc: "127.0.0.1:\(port)", kpasswd: "127.0.0.1:\(realm.kpasswdPort)")
            let started = ContinuousClock.now
            let (result, trace) = try realm.client(
                "/usr/bin/kinit",
                [KerberosRealm.principal],
                config: config,
                input: "\(KerberosOverLimitTests.password)\n"
            )
            return (result, trace, ContinuousClock.now - started)
        }
    }

    @Test("krb5-tcp: kinit over the limit is told to use TCP and completes well under a second")
    func krb5TCPRedirects() throws {
        let setup = try Setup(overLimit: "krb5-tcp")
        let (result, trace, elapsed) = try setup.kinitOverLimit()
        #expect(result.status == 0, "kinit: \(result.standardError)\n\(trace)\n\(setup.udpd.log)")
        #expect(trace.contains("Response too big for UDP"), "MIT did not read udpd's answer:\n\(trace)")
        #expect(trace.contains("from stream 127.0.0.1:\(setup.port)"), "no TCP answer:\n\(trace)")
        #expect(elapsed < .milliseconds(700), "kinit took \(elapsed)")
        let kdc = try setup.udpd.counters("kdc")
        #expect(kdc.drops["rate_limited_tcp_redirect", default: 0] >= 1, "\(kdc.drops)")
        #expect(kdc.tcpAccepted >= 1)
        // The datagram that was no Kerberos request was within the limit; nothing else was dropped outright.
        #expect(kdc.drops["rate_limited", default: 0] == 0, "\(kdc.drops)")
    }

    @Test("drop: kinit over the limit hears nothing and waits for its UDP timeout")
    func dropMakesKinitWait() throws {
        let setup = try Setup(overLimit: "drop")
        let (result, trace, elapsed) = try setup.kinitOverLimit()
        #expect(result.status == 0, "kinit: \(result.standardError)\n\(trace)\n\(setup.udpd.log)")
        #expect(!trace.contains("too big"), "\(trace)")
        #expect(elapsed >= .milliseconds(900), "kinit took only \(elapsed)")
        let kdc = try setup.udpd.counters("kdc")
        #expect(kdc.drops["rate_limited", default: 0] >= 1, "\(kdc.drops)")
        #expect(kdc.drops["rate_limited_tcp_redirect", default: 0] == 0, "\(kdc.drops)")
    }
}
