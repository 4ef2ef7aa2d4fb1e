import Foundation
import UDPDTestSupport
import UDPDTransport

/// A throwaway MIT Kerberos realm: its own krb5.conf and kdc.conf in a temporary directory, a database with one
/// principal, and a real `krb5kdc` and `kadmind` listening only on 127.0.0.1 at probed ports. Both daemons are
/// killed on deinit, whatever happened.
final class KerberosRealm {
    static let realm = "UDPD.TEST"
    static let principal = "alice@UDPD.TEST"
    static let programs = [
        "/usr/sbin/krb5kdc", "/usr/sbin/kadmind", "/usr/sbin/kdb5_util", "/usr/sbin/kadmin.local",
        "/usr/bin/kinit", "/usr/bin/kpasswd",
    ]

    /// Whether MIT Kerberos (krb5-kdc, krb5-admin-server, krb5-user) is installed.
    static var isInstalled: Bool { programs.allSatisfy { FileManager.default.isExecutableFile(atPath: $0) } }

    let directory: TemporaryDirectory
    /// The KDC's port on 127.0.0.1 (UDP and TCP).
    let kdcPort: UInt16
    /// kadmind's kpasswd port on 127.0.0.1 (UDP and TCP).
    let kpasswdPort: UInt16
    private var daemons: [Process] = []

    /// Creates the realm with `alice` whose password is `password`, and starts both daemons.
    init(password: String) throws {
        directory = try TemporaryDirectory()
        var ports: Set<UInt16> = []
        while ports.count < 3 { ports.insert(try probeFreePort()) }
        let chosen = Array(ports)
        kdcPort = chosen[0]
        kpasswdPort = chosen[1]
        let adminPort = chosen[2]
        let path = directory.path
        _ = try directory.write(
            "krb5.conf",
            clientConfig(
                kdc: "127.0.0.1:\(kdcPort)",
                kpasswd: "127.0.0.1:\(kpasswdPort)"
            )
        )
        _ = try directory.write(
            "kdc.conf",
            """
            [kdcdefaults]
                kdc_listen = 127.0.0.1:\(kdcPort)
                kdc_tcp_listen = 127.0.0.1:\(kdcPort)
            [realms]
                \(Self.realm) = {
                    database_name = \(path)/principal
                    key_stash_file = \(path)/stash
                    acl_file = \(path)/kadm5.acl
                    kpasswd_listen = 127.0.0.1:\(kpasswdPort)
                    kadmind_listen = 127.0.0.1:\(adminPort)
                }
            [logging]
                kdc = FILE:\(path)/kdc.log
                admin_server = FILE:\(path)/kadmind.log
            """
        )
        _ = try directory.write("kadm5.acl", "*/admin@\(Self.realm) *\n")
        let environment = serverEnvironment
        let create = try runCommand(
            "/usr/sbin/kdb5_util",
            ["-r", Self.realm, "create", "-s", "-P", "master-key"],
            environment: environment
        )
        guard create.status == 0 else { throw TestFailure("kdb5_util create failed: \(create.standardError)") }
        let add = try runCommand(
            "/usr/sbin/kadmin.local",
            ["-r", Self.realm, "-q", "addprinc -pw \(password) \(Self.principal)"],
            environment: environment
        )
        guard add.status == 0 else { throw TestFailure("addprinc failed: \(add.standardError)") }
        try start("/usr/sbin/krb5kdc", ["-n", "-P", "\(path)/kdc.pid"])
        try start("/usr/sbin/kadmind", ["-nofork", "-P", "\(path)/kadmind.pid"])
        try waitForListeners()
    }

    deinit {
        for daemon in daemons where daemon.isRunning {
            kill(daemon.processIdentifier, SIGKILL)
            daemon.waitUntilExit()
        }
    }

    /// The environment of the daemons and of kadmin.local.
    var serverEnvironment: [String: String] {
        ProcessInfo.processInfo.environment.merging([
            "KRB5_CONFIG": directory.file("krb5.conf"),
            "KRB5_KDC_PROFILE": directory.file("kdc.conf"),
        ]) { _, new in new }
    }

    /// A client krb5.conf that reaches the KDC at `kdc` and kpasswd at `kpasswd` (`HOST:PORT`, `[V6]:PORT`).
    func clientConfig(kdc: String, kpasswd: String, tcpOnly: Bool = false) -> String {
        """
        [libdefaults]
            default_realm = \(Self.realm)
            dns_lookup_kdc = false
            dns_lookup_realm = false
            rdns = false
            \(tcpOnly ? "udp_preference_limit = 1" : "")
        [realms]
            \(Self.realm) = {
                kdc = \(kdc)
                kpasswd_server = \(kpasswd)
            }
        """
    }

    /// Runs a client program (kinit, kpasswd) with `config` as its krb5.conf, a fresh credential cache, and a
    /// KRB5_TRACE log; returns its outcome and the trace.
    func client(
        _ program: String,
        _ arguments: [String],
        config: String,
        input: String
    ) throws
        -> (result: CommandResult, trace: String)
    {
        let name = UUID().uuidString
        let configPath = try directory.write("client-\(name).conf", config)
        let tracePath = directory.file("trace-\(name).log")
        var environment = ProcessInfo.processInfo.environment
        environment["KRB5_CONFIG"] = configPath
        environment["KRB5CCNAME"] = "FILE:\(directory.file("cc-\(name)"))"
        environment["KRB5_TRACE"] = tracePath
        environment["KRB5_KDC_PROFILE"] = nil
        let result = try runCommand(program, arguments, environment: environment, input: input, timeout: 30)
        let trace = (try? String(contentsOfFile: tracePath, encoding: .utf8)) ?? ""
        return (result, trace)
    }

    /// The daemons' logs, for failure messages.
    var logs: String {
        ["kdc.log", "kadmind.log"].map { (try? String(contentsOfFile: directory.file($0), encoding: .utf8)) ?? "" }
            .joined(separator: "\n")
    }

    private func start(_ program: String, _ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        process.environment = serverEnvironment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        daemons.append(process)
    }

    /// Waits (up to 10 s) until the KDC and kpasswd accept TCP connections.
    private func waitForListeners() throws {
        let deadline = ContinuousClock.now + .seconds(10)
        for port in [kdcPort, kpasswdPort] {
            while isPortFree("127.0.0.1", port, proto: "tcp") {
                guard ContinuousClock.now < deadline, daemons.allSatisfy(\.isRunning) else {
                    throw TestFailure("krb5kdc/kadmind did not start listening:\n\(logs)")
                }
                usleep(50_000)
            }
        }
    }
}
