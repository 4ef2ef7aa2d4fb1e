import Foundation
import Testing
import UDPDControl
import UDPDTestSupport
import UDPDTransport

/// A second `krb5kdc` of a ``KerberosRealm``, on the same database, at a port of its own: the KDC a test stops.
final class SecondKDC {
    let port: UInt16
    let logPath: String
    private let process = Process()

    init(of realm: KerberosRealm, port: UInt16) throws {
        self.port = port
        let path = realm.directory.path
        logPath = realm.directory.file("kdc-\(port).log")
        let profile = try realm.directory.write(
            "kdc-\(port).conf",
            """
            [kdcdefaults]
                kdc_listen = 127.0.0.1:\(port)
                kdc_tcp_listen = 127.0.0.1:\(port)
            [realms]
                \(KerberosRealm.realm) = {
                    database_name = \(path)/principal
                    key_stash_file = \(path)/stash
                    acl_file = \(path)/kadm5.acl
                }
            [logging]
                kdc = FILE:\(logPath)
            """
        )
        var environment = realm.serverEnvironment
        environment["KRB5_KDC_PROFILE"] = profile
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/krb5kdc")
        process.arguments = ["-n", "-P", realm.directory.file("kdc-\(port).pid")]
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + .seconds(10)
        while isPortFree("127.0.0.1", port, proto: "tcp") {
            guard ContinuousClock.now < deadline, process.isRunning else {
                throw TestFailure("the second krb5kdc did not start listening: \(log)")
            }
            usleep(50_000)
        }
    }

    deinit { stop() }

    /// What it logged.
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Kills it and waits until it is gone: its port refuses from then on.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// The seconds of each `KRB5_TRACE` line (`[pid] 1733480000.123456: ...`).
private func traceTimes(_ trace: String) -> [Double] {
    trace.split(separator: "\n").compactMap { line in
        guard let close = line.firstIndex(of: "]"), let colon = line[close...].firstIndex(of: ":") else { return nil }
        return Double(line[line.index(after: close)..<colon].trimmingCharacters(in: .whitespaces))
    }
}

@Suite(
    "MIT Kerberos through udpd with two KDCs on one database",
    .serialized,
    .enabled(
        if: KerberosRealm.isInstalled,
        "MIT Kerberos is not installed (krb5-kdc, krb5-admin-server, krb5-user): the Kerberos tests are skipped"
    )
)
struct KerberosPoolTests {
    static let password = "pool-Secret-1"

    @Test("the primary KDC stops: kinit over UDP through udpd is answered by the second in well under a second")
    func kinitSurvivesThePrimary() throws {
        let realm = try KerberosRealm(password: Self.password)
        var taken: Set<UInt16> = [realm.kdcPort, realm.kpasswdPort]
        var chosen: [UInt16] = []
        while chosen.count < 2 {
            let port = try probeFreePort()
            if taken.insert(port).inserted { chosen.append(port) }
        }
        let primary = try SecondKDC(of: realm, port: chosen[0])
        let udpdPort = chosen[1]
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: forward
                    udp: \(udpdPort)
                    tcp: \(udpdPort)
                    upstream: [127.0.0.1:\(primary.port), 127.0.0.1:\(realm.kdcPort)]
                    health-check: {probe: none, interval: 30s}
                    framing: krb5
                """
        )
        try udpd.waitUntilReady()
        let config = realm.clientConfig(kdc: "127.0.0.1:\(udpdPort)", kpasswd: "127.0.0.1:\(realm.kpasswdPort)")
        func kinit() throws -> (result: CommandResult, trace: String, elapsed: Duration) {
            let started = ContinuousClock.now
            let (result, trace) = try realm.client(
                "/usr/bin/kinit",
                [KerberosRealm.principal],
                config: config,
                input: "\(Self.password)\n"
            )
            return (result, trace, ContinuousClock.now - started)
        }

        let before = try kinit()
        #expect(before.result.status == 0, "\(before.result.standardError)\n\(before.trace)")
        #expect(primary.log.contains("AS_REQ"), "the primary answered before it stopped:\n\(primary.log)")

        primary.stop()
        let after = try kinit()
        #expect(after.result.status == 0, "\(after.result.standardError)\n\(after.trace)\n\(udpd.log)")
        #expect(after.trace.contains("Received answer"), "\(after.trace)")
        #expect(after.trace.contains("from dgram 127.0.0.1:\(udpdPort)"), "\(after.trace)")
        #expect(!after.trace.contains("stream"), "kinit fell back to TCP:\n\(after.trace)")
        #expect(!after.trace.contains("retry"), "kinit had to retry:\n\(after.trace)")
        let times = traceTimes(after.trace)
        let traced = (times.max() ?? 0) - (times.min() ?? 0)
        #expect(times.count > 4 && traced < 0.5, "the trace spans \(traced) s:\n\(after.trace)")
        #expect(after.elapsed < .seconds(1), "kinit took \(after.elapsed)")

        let upstreams = try udpd.status().services.first { $0.name == "kdc" }?.upstreams ?? []
        #expect(upstreams.map(\.state) == ["down", "up"], "\(upstreams)")
        let counters = try udpd.counters("kdc")
        #expect(counters.dropped == 0, "no request lost: \(counters.drops)")
    }

    @Test("krb5 probes: a stopped primary KDC is down without any traffic, and up again after rise answers")
    func krb5ProbesFollowThePrimary() throws {
        let realm = try KerberosRealm(password: Self.password)
        var taken: Set<UInt16> = [realm.kdcPort, realm.kpasswdPort]
        var chosen: [UInt16] = []
        while chosen.count < 2 {
            let port = try probeFreePort()
            if taken.insert(port).inserted { chosen.append(port) }
        }
        var primary = try SecondKDC(of: realm, port: chosen[0])
        let udpdPort = chosen[1]
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: forward
                    udp: \(udpdPort)
                    upstream: [127.0.0.1:\(primary.port), 127.0.0.1:\(realm.kdcPort)]
                    health-check: {probe: krb5, interval: 200ms, timeout: 150ms, fall: 2, rise: 2}
                """
        )
        try udpd.waitUntilReady()
        func upstreams() throws -> [UpstreamStatus] {
            try udpd.status().services.first { $0.name == "kdc" }?.upstreams ?? []
        }
        #expect(
            try eventually { try upstreams().allSatisfy { $0.state == "up" && $0.probeRoundTripMilliseconds != nil } },
            "both KDCs answer the krb5 probe: \((try? upstreams()) ?? [])\n\(udpd.log)"
        )
        #expect(primary.log.contains("udpd-health-probe-"), "the KDC logs the probe's principal:\n\(primary.log)")

        primary.stop()
        let stopped = ContinuousClock.now
        #expect(try eventually(timeout: .seconds(3)) { try upstreams()[0].state == "down" })
        #expect(ContinuousClock.now - stopped < .seconds(2))

        let config = realm.clientConfig(kdc: "127.0.0.1:\(udpdPort)", kpasswd: "127.0.0.1:\(realm.kpasswdPort)")
        let started = ContinuousClock.now
        let (result, trace) = try realm.client(
            "/usr/bin/kinit",
            [KerberosRealm.principal],
            config: config,
            input: "\(Self.password)\n"
        )
        #expect(result.status == 0, "\(result.standardError)\n\(trace)")
        #expect(!trace.contains("retry") && !trace.contains("stream"), "\(trace)")
        #expect(ContinuousClock.now - started < .seconds(1))

        primary = try SecondKDC(of: realm, port: chosen[0])
        #expect(try eventually(timeout: .seconds(3)) { try upstreams()[0].state == "up" })
        #expect(try udpd.counters("kdc").dropped == 0)
    }
}
