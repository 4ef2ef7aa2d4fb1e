import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A real MIT realm behind udpd: krb5kdc and kadmind on 127.0.0.1, udpd forwarding to them from the wildcard.
struct KerberosBehindUDPD {
    static let oldPassword = "old-Secret-1"
    static let newPassword = "new-Secret-2"

    let realm: KerberosRealm
    let udpd: UDPDProcess
    let kdcPort: UInt16
    let kpasswdPort: UInt16

    init() throws {
        realm = try KerberosRealm(password: Self.oldPassword)
        var ports: Set<UInt16> = [realm.kdcPort, realm.kpasswdPort]
        var chosen: [UInt16] = []
        while chosen.count < 2 {
            let port = try probeFreePort()
            if ports.insert(port).inserted { chosen.append(port) }
        }
        kdcPort = chosen[0]
        kpasswdPort = chosen[1]
        udpd = try UDPDProcess(
            config: """
                log:
                  level: debug
                services:
                  kdc:
                    handler: forward
                    udp: \(kdcPort)
                    tcp: \(kdcPort)
                    upstream: 127.0.0.1:\(realm.kdcPort)
                    framing: krb5
                  kpasswd:
                    handler: forward
                    udp: \(kpasswdPort)
                    tcp: \(kpasswdPort)
                    upstream: 127.0.0.1:\(realm.kpasswdPort)
                    framing: krb5
                """
        )
        try udpd.waitUntilReady()
    }

    /// A client krb5.conf that reaches the realm through udpd at `host` (an address as written in krb5.conf).
    func config(host: String, tcpOnly: Bool = false) -> String {
        realm.clientConfig(kdc: "\(host):\(kdcPort)", kpasswd: "\(host):\(kpasswdPort)", tcpOnly: tcpOnly)
    }

    func kinit(_ password: String, host: String, tcpOnly: Bool = false) throws -> (result: CommandResult, trace: String)
    {
        try realm.client(
            "/usr/bin/kinit",
            [KerberosRealm.principal],
            config: config(host: host, tcpOnly: tcpOnly),
            input: "\(password)\n"
        )
    }

    func counters(_ service: String) throws -> ServiceCounters {
        try udpd.counters(service)
    }

    /// The hosts a client can reach udpd at, as krb5.conf writes them.
    static var hosts: [String] {
        var hosts = hasSecondLoopbackAddress ? ["127.0.0.2"] : ["127.0.0.1"]
        if hasIPv6Loopback { hosts.append("[::1]") }
        return hosts
    }
}

/// How KRB5_TRACE writes an address: IPv6 without brackets.
private func traced(_ host: String) -> String {
    host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
}

@Suite(
    "MIT Kerberos through udpd",
    .serialized,
    .enabled(
        if: KerberosRealm.isInstalled,
        "MIT Kerberos is not installed (krb5-kdc, krb5-admin-server, krb5-user): the Kerberos tests are skipped"
    )
)
struct KerberosTests {
    @Test("kinit over UDP through udpd, to 127.0.0.2 and ::1; UDP carried every exchange")
    func kinitOverUDP() throws {
        let setup = try KerberosBehindUDPD()
        for host in KerberosBehindUDPD.hosts {
            let (result, trace) = try setup.kinit(KerberosBehindUDPD.oldPassword, host: host)
            #expect(result.status == 0, "kinit via \(host): \(result.standardError)\n\(trace)\n\(setup.udpd.log)")
            // MIT falls back to TCP silently; the trace shows which transport answered.
            #expect(trace.contains("Received answer"), "\(trace)")
            #expect(trace.contains("from dgram \(traced(host)):\(setup.kdcPort)"), "\(trace)")
            #expect(!trace.contains("stream"), "kinit via \(host) used TCP:\n\(trace)")
        }
        let kdc = try setup.counters("kdc")
        #expect(kdc.tcpAccepted == 0)
        #expect(kdc.rxPackets >= UInt64(KerberosBehindUDPD.hosts.count))
        #expect(kdc.txPackets >= UInt64(KerberosBehindUDPD.hosts.count))
        #expect(kdc.dropped == 0, "\(kdc.drops)")
    }

    @Test("kinit over TCP (udp_preference_limit = 1) through udpd, to 127.0.0.2 and ::1")
    func kinitOverTCP() throws {
        let setup = try KerberosBehindUDPD()
        for host in KerberosBehindUDPD.hosts {
            let (result, trace) = try setup.kinit(KerberosBehindUDPD.oldPassword, host: host, tcpOnly: true)
            #expect(result.status == 0, "kinit via \(host): \(result.standardError)\n\(trace)\n\(setup.udpd.log)")
            #expect(trace.contains("from stream \(traced(host)):\(setup.kdcPort)"), "\(trace)")
            #expect(!trace.contains("dgram"), "kinit via \(host) used UDP:\n\(trace)")
        }
        let kdc = try setup.counters("kdc")
        #expect(kdc.tcpAccepted >= UInt64(KerberosBehindUDPD.hosts.count))
        #expect(kdc.rxPackets == 0)
        #expect(kdc.dropped == 0, "\(kdc.drops)")
    }

    @Test("kpasswd through udpd changes the password: the new one works, the old one no longer does")
    func kpasswdChangesThePassword() throws {
        let setup = try KerberosBehindUDPD()
        let host = KerberosBehindUDPD.hosts[0]
        let old = KerberosBehindUDPD.oldPassword
        let new = KerberosBehindUDPD.newPassword
        let (result, trace) = try setup.realm.client(
            "/usr/bin/kpasswd",
            [KerberosRealm.principal],
            config: setup.config(host: host),
            input: "\(old)\n\(new)\n\(new)\n"
        )
        #expect(result.status == 0, "kpasswd: \(result.standardOutput)\(result.standardError)\n\(trace)")
        #expect(result.standardOutput.contains("Password changed"), "\(result.standardOutput)")
        #expect(trace.contains(":\(setup.kpasswdPort)"), "kpasswd did not go through udpd:\n\(trace)")
        let kpasswd = try setup.counters("kpasswd")
        #expect(kpasswd.rxPackets + kpasswd.tcpAccepted > 0)

        let withNew = try setup.kinit(new, host: host)
        #expect(withNew.result.status == 0, "kinit with the new password: \(withNew.result.standardError)")
        let withOld = try setup.kinit(old, host: host)
        #expect(withOld.result.status != 0, "kinit with the old password succeeded")
    }

    @Test("a krb5 frame longer than max-message or with the reserved bit closes the connection, counted")
    func oversizedFramesAreRefused() throws {
        let setup = try KerberosBehindUDPD()
        let server = try #require(IPEndpoint(address: "127.0.0.1", port: setup.kdcPort))
        let long = try TCPTestClient(to: server)
        try long.send([0x00, 0x20, 0x00, 0x00])  // 2 MiB
        #expect(long.readsEndOfFile())
        let reserved = try TCPTestClient(to: server)
        try reserved.send([0x80, 0x00, 0x00, 0x10])
        #expect(reserved.readsEndOfFile())
        let kdc = try setup.counters("kdc")
        #expect(kdc.drops["frame_too_long"] == 1, "\(kdc.drops)")
        #expect(kdc.drops["frame_reserved_bit"] == 1, "\(kdc.drops)")
        #expect(setup.udpd.isRunning)
    }
}
