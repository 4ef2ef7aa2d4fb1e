import Foundation
import Testing
import UDPDControl
import UDPDTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `transparent: true` (issue 16): the upstream sees the client's own address and port, over UDP and TCP, IPv4 and
/// IPv6, with udpd running as root and dropped to `nobody` (then only its binder thread keeps CAP_NET_RAW).
///
/// In network namespaces the test makes: the client in one (10.201.1.10), udpd in the router between them, the
/// upstream in the third (10.201.2.10, routing the client's subnet through udpd's namespace), and in udpd's
/// namespace the routing `udpd.yaml(5)` documents for an upstream on another host: what arrives from the upstream's
/// side is delivered locally, where udpd's transparent sockets take it. The upstream is a small Python server that
/// answers every datagram and connection with the address and port it saw; the client checks that this is its own.
@Suite("transparent: the upstream sees the client's own address", .serialized)
struct TransparentForwardTests {
    /// Answers each datagram, and each connection's first bytes, with `ADDRESS PORT` of its peer; on PORT of the
    /// IPv4 and the IPv6 address given (`python3 upstream.py PORT ADDRESS4 ADDRESS6`).
    static let upstreamScript = """
        import socket, sys, threading
        port, address4, address6 = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        def serve_udp(family, address):
            s = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((address, port))
            while True:
                data, peer = s.recvfrom(2048)
                s.sendto(("%s %d" % (peer[0], peer[1])).encode(), peer)
        def serve_tcp(family, address):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((address, port))
            s.listen(16)
            while True:
                c, peer = s.accept()
                c.recv(100)
                c.sendall(("%s %d" % (peer[0], peer[1])).encode())
                c.close()
        for target in (serve_udp, serve_tcp):
            for family, address in ((socket.AF_INET, address4), (socket.AF_INET6, address6)):
                threading.Thread(target=target, args=(family, address), daemon=True).start()
        threading.Event().wait()
        """

    /// Asks udpd at `ADDRESS PORT` over UDP (a connected socket: a reply from any other source is not seen) and
    /// over TCP, and prints what the upstream saw next to the client's own address and port.
    static let clientScript = """
        import socket, sys, time
        host, port = sys.argv[1], int(sys.argv[2])
        modes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["udp", "tcp"]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if "udp" in modes:
            u = socket.socket(family, socket.SOCK_DGRAM)
            u.connect((host, port))
            u.settimeout(0.3)
            me = u.getsockname()
            reply = None
            for attempt in range(30):
                u.send(b"who am i")
                try:
                    reply = u.recv(2048).decode()
                    break
                except socket.timeout:
                    pass
            print("udp %s %d seen-as %s" % (me[0], me[1], reply))
        if "tcp" in modes:
            t = socket.create_connection((host, port), timeout=10)
            me = t.getsockname()
            t.sendall(b"who am i")
            print("tcp %s %d seen-as %s" % (me[0], me[1], t.recv(100).decode()))
        """

    /// Where the upstream runs, and the routing udpd.yaml(5) gives for it.
    enum UpstreamPlace: String, CustomStringConvertible {
        /// Another host (namespace), behind udpd's eth2: `ip rule add iif eth2 lookup 100`.
        case otherHost
        /// udpd's own host, on loopback: `ip rule add from 127.0.0.1 sport PORT lookup 100`.
        case sameHost

        var description: String { rawValue }
    }

    @Test(
        "UDP and TCP, IPv4 and IPv6: the upstream sees the client's address and port",
        .enabled(if: python3Path != nil, "python3 is needed for the test's upstream and client"),
        arguments: [(false, UpstreamPlace.otherHost), (true, .otherHost), (true, .sameHost)]
    )
    func upstreamSeesTheClient(dropsPrivileges: Bool, place: UpstreamPlace) throws {
        guard isRoot else {
            print("skipped: transparent sockets and network namespaces need root")
            return
        }
        let lab = try MultiHomedLab()
        let directory = try TemporaryDirectory()
        let upstreamPort = try probeFreePort()
        let upstream = try BackgroundCommand(
            lab.launcher(place == .sameHost ? lab.server : lab.clientB)
                + [python3Path!, try directory.write("upstream.py", Self.upstreamScript), "\(upstreamPort)"]
                // On udpd's host the upstream answers from the address udpd sent to, which the routing rule names.
                + (place == .sameHost ? ["127.0.0.1", "::1"] : ["0.0.0.0", "::"])
        )
        defer { _ = upstream }
        // The routing of udpd.yaml(5): the upstream's replies to clients are delivered locally, where udpd's
        // transparent sockets take them.
        let (upstream4, upstream6): (String, String)
        switch place {
        case .otherHost:
            for family in ["-4", "-6"] {
                try lab.ip(["-n", lab.server, family, "rule", "add", "iif", "eth2", "lookup", "100"])
            }
            (upstream4, upstream6) = ("10.201.2.10", "[fd00:201:2::10]")
        case .sameHost:
            for (family, loopback) in [("-4", "127.0.0.1"), ("-6", "::1")] {
                try lab.ip([
                    "-n", lab.server, family, "rule", "add", "from", loopback, "sport", "\(upstreamPort)",
                    "lookup", "100",
                ])
            }
            (upstream4, upstream6) = ("127.0.0.1", "[::1]")
        }
        try lab.ip(["-n", lab.server, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"])
        try lab.ip(["-n", lab.server, "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100"])

        let port4 = try probeFreePort()
        let port6 = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                \(dropsPrivileges ? "user: nobody" : "")
                services:
                  kdc4:
                    handler: forward
                    udp: \(port4)
                    tcp: \(port4)
                    bind: [10.201.1.1]
                    upstream: ["\(upstream4):\(upstreamPort)"]
                    transparent: true
                  kdc6:
                    handler: forward
                    udp: \(port6)
                    tcp: \(port6)
                    bind: ["fd00:201:1::1"]
                    upstream: ["\(upstream6):\(upstreamPort)"]
                    transparent: true
                """,
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        if dropsPrivileges {
            #expect(udpd.log.contains("CAP_NET_RAW on the binder thread"), "\(udpd.log)")
        }
        let client = try directory.write("client.py", Self.clientScript)
        for (address, port) in [("10.201.1.1", port4), ("fd00:201:1::1", port6)] {
            let result = try runCommand(
                lab.launcher(lab.clientA)[0],
                Array(lab.launcher(lab.clientA).dropFirst()) + [python3Path!, client, address, "\(port)"],
                timeout: 30
            )
            let lines = result.standardOutput.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
            #expect(lines.count == 2, "\(address): \(result.standardOutput)\(result.standardError)\n\(udpd.log)")
            for words in lines {
                // PROTO ADDRESS PORT seen-as ADDRESS PORT
                guard words.count == 6 else {
                    Issue.record("\(address): the upstream's answer did not come back: \(words)\n\(udpd.log)")
                    continue
                }
                #expect(
                    words[1] == words[4] && words[2] == words[5],
                    """
                    \(words[0]) to \(address): the upstream saw \(words[4]) \(words[5]), \
                    not the client \(words[1]) \(words[2])\n\(udpd.log)
                    """
                )
                #expect(words[1].hasPrefix(address.contains(":") ? "fd00:201:1::10" : "10.201.1.10"))
            }
        }
        for service in ["kdc4", "kdc6"] {
            let counters = try udpd.counters(service)
            #expect(counters.dropped == 0, "\(service): \(counters.drops)\n\(udpd.log)")
            #expect(counters.tcpAccepted == 1, "\(service)")
        }
        #expect(!udpd.log.contains("transparent: true cannot work"), "\(udpd.log)")
    }

    @Test(
        "A transparent TCP connect that gets no answer times out and goes to the next upstream",
        .enabled(if: python3Path != nil, "python3 is needed for the test's upstream and client")
    )
    func silentUpstreamTimesOutAndFailsOver() throws {
        guard isRoot else {
            print("skipped: transparent sockets and network namespaces need root")
            return
        }
        let lab = try MultiHomedLab()
        try lab.ip(["-n", lab.server, "rule", "add", "iif", "eth2", "lookup", "100"])
        try lab.ip(["-n", lab.server, "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "100"])
        // The upstream host's second address answers nothing: what it sends goes into a black hole, so a connect
        // to it sees no SYN-ACK and times out (5 s).
        try lab.ip(["-n", lab.clientB, "addr", "add", "10.201.2.11/24", "dev", "eth0"])
        try lab.ip(["-n", lab.clientB, "rule", "add", "from", "10.201.2.11", "lookup", "200"])
        try lab.ip(["-n", lab.clientB, "route", "add", "blackhole", "default", "table", "200"])
        let directory = try TemporaryDirectory()
        let upstreamPort = try probeFreePort()
        let upstream = try BackgroundCommand(
            lab.launcher(lab.clientB)
                + [python3Path!, try directory.write("upstream.py", Self.upstreamScript), "\(upstreamPort)"]
                + ["0.0.0.0", "::"]
        )
        defer { _ = upstream }
        let port = try probeFreePort()
        let udpd = try UDPDProcess(
            config: """
                services:
                  kdc:
                    handler: forward
                    tcp: \(port)
                    bind: [10.201.1.1]
                    upstream: ["10.201.2.11:\(upstreamPort)", "10.201.2.10:\(upstreamPort)"]
                    transparent: true
                """,
            launcher: lab.launcher(lab.server)
        )
        try udpd.waitUntilReady()
        usleep(300_000)  // the upstream's Python starting
        let started = ContinuousClock.now
        let result = try runCommand(
            lab.launcher(lab.clientA)[0],
            Array(lab.launcher(lab.clientA).dropFirst())
                + [python3Path!, try directory.write("client.py", Self.clientScript), "10.201.1.1", "\(port)", "tcp"],
            timeout: 30
        )
        let elapsed = ContinuousClock.now - started
        let words = result.standardOutput.split(separator: " ").map {
            $0.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(
            words.count == 6 && words[1] == words[4] && words[2] == words[5] && words[1] == "10.201.1.10",
            "\(result.standardOutput)\(result.standardError)\n\(udpd.log)"
        )
        #expect(elapsed >= .seconds(4) && elapsed < .seconds(9), "answered after \(elapsed)")
        let states = try udpd.status().services.first { $0.name == "kdc" }?.upstreams ?? []
        #expect(states.map(\.state) == ["down", "up"], "\(states)")
        #expect(try udpd.counters("kdc").drops["upstream_error", default: 0] == 1)
        #expect(udpd.log.contains("Connection timed out"), "\(udpd.log)")
    }

    @Test("Without CAP_NET_RAW: a warning at reload, and every session that fails is counted")
    func missingCapabilityIsSaidAndCounted() throws {
        guard isRoot else {
            print("skipped: dropping to nobody needs root")
            return
        }
        let upstreamPort = try probeFreePort()
        let upstream = try UDPDProcess.echoUpstream(port: upstreamPort)
        defer { _ = upstream }
        let port = try probeFreePort()
        let echo = "services:\n  plain: {handler: forward, udp: \(port), bind: [127.0.0.1], "
            + "upstream: [\"127.0.0.1:\(upstreamPort)\"]}\n"
        // Started with no transparent service, udpd drops CAP_NET_RAW with everything else.
        let udpd = try UDPDProcess(config: "user: nobody\n" + echo)
        try udpd.waitUntilReady()
        #expect(!udpd.log.contains("CAP_NET_RAW"), "\(udpd.log)")
        let transparentPort = try probeFreePort()
        try udpd.rewriteConfig(
            "user: nobody\n" + echo
                + "  clear: {handler: forward, udp: \(transparentPort), bind: [127.0.0.1], "
                + "upstream: [\"127.0.0.1:\(upstreamPort)\"], transparent: true}\n"
        )
        chmod(udpd.directory.path, 0o755)
        chmod(udpd.configPath, 0o644)
        let reload = try udpd.udpctl(["reload"])
        #expect(reload.status == 0, "\(reload.standardOutput)\(reload.standardError)")
        #expect(udpd.log.contains("transparent: true cannot work"), "\(udpd.log)")
        #expect(udpd.log.contains("CAP_NET_RAW"), "\(udpd.log)")

        let result = try runCommand(
            BuiltProducts.path("udpd-testclient"),
            ["udp", "127.0.0.1", "\(transparentPort)", "3", "0", "200"],
            timeout: 30
        )
        #expect(result.status != 0, "no transparent session can open without the capability")
        let counters = try udpd.counters("clear")
        #expect(counters.drops["upstream_error"] == 3, "\(counters.drops)\n\(udpd.log)")
        // The service without the key is untouched.
        let plain = try runCommand(
            BuiltProducts.path("udpd-testclient"),
            ["udp", "127.0.0.1", "\(port)", "3", "0", "1000"]
        )
        #expect(plain.status == 0, "\(plain.standardOutput)\(plain.standardError)")
    }

    @Test("Started unprivileged without CAP_NET_RAW: a warning at start naming the service, every request counted")
    func unprivilegedStartSaysSo() throws {
        guard isRoot, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            print("skipped: starting udpd as nobody through setpriv needs root and setpriv")
            return
        }
        let upstreamPort = try probeFreePort()
        let upstream = try UDPDProcess.echoUpstream(port: upstreamPort)
        defer { _ = upstream }
        let port = try probeFreePort()
        // The launcher gives the temporary directory (configuration, control socket) to nobody, then execs udpd
        // through setpriv with no capability at all.
        let launcher = [
            "/bin/sh", "-c",
            "chown nobody \"$(dirname \"$3\")\" && chmod 0644 \"$3\" && exec /usr/bin/setpriv --reuid=nobody "
                + "--regid=nogroup --clear-groups --inh-caps=-all \"$@\"",
            "launcher",
        ]
        let udpd = try UDPDProcess(
            config: """
                services:
                  clear:
                    handler: forward
                    udp: \(port)
                    bind: [127.0.0.1]
                    upstream: ["127.0.0.1:\(upstreamPort)"]
                    transparent: true
                """,
            launcher: launcher
        )
        try udpd.waitUntilReady()
        #expect(udpd.log.contains("transparent: true cannot work"), "\(udpd.log)")
        #expect(udpd.log.contains("service=clear"), "\(udpd.log)")
        let result = try runCommand(
            BuiltProducts.path("udpd-testclient"),
            ["udp", "127.0.0.1", "\(port)", "2", "0", "200"],
            timeout: 30
        )
        #expect(result.status != 0)
        #expect(try udpd.counters("clear").drops["upstream_error"] == 2, "\(udpd.log)")
    }
}
