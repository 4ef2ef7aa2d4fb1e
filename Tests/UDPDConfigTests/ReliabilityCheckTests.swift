import Testing

@testable import UDPDConfig

/// What `--check` must refuse because it would fail, mislead or loop at run time (issue 12, findings 2, 3, 5, 6),
/// each error at the position of the node that causes it.
@Suite struct ReliabilityCheckTests {
    // MARK: allow and deny (finding 3)

    @Test func emptyAllowIsAnError() {
        #expect(
            errorLines(service("allow: []")) == [
                "t.yaml:5:12: error: 'allow' is empty, which would serve no one; list the prefixes to serve "
                    + "(0.0.0.0/0 and ::/0 for everyone), or leave 'allow' out"
            ]
        )
        #expect(errorLines(service("deny: []")) == [], "an empty deny denies no one, as written")
    }

    @Test func ipv4MappedPrefixesAreErrors() {
        #expect(
            errorLines(service("allow: [\"::ffff:0:0/96\"]\ndeny: [\"::ffff:10.0.0.0/104\"]")) == [
                "t.yaml:5:13: error: '::ffff:0:0/96' is an IPv4-mapped prefix, which matches no one: IPv4 clients "
                    + "are matched by IPv4 prefixes only; write 0.0.0.0/0",
                "t.yaml:6:12: error: '::ffff:10.0.0.0/104' is an IPv4-mapped prefix, which matches no one: IPv4 "
                    + "clients are matched by IPv4 prefixes only; write 10.0.0.0/8",
            ]
        )
        #expect(errorLines(service("deny: [\"::/0\"]")) == [], "::/0 is every IPv6 client")
    }

    // MARK: what fails at start (finding 6)

    @Test func wildcardAndSpecificAddressInOneService() {
        #expect(
            errorLines(service("bind: [0.0.0.0, 127.0.0.1]")) == [
                "t.yaml:5:21: error: '127.0.0.1' overlaps '0.0.0.0' (at 5:12): 0.0.0.0 already covers 127.0.0.1 on "
                    + "the same ports; list either the wildcard address or specific ones"
            ]
        )
        #expect(errorLines(service("bind: [\"::1\", \"::\", 127.0.0.1]")).count == 1)
    }

    @Test func listedWildcardAddressOverlapsAnotherServicesAddress() {
        let yaml = """
            services:
              a: {handler: echo, udp: 53, bind: [0.0.0.0]}
              b: {handler: echo, udp: 53, bind: [127.0.0.1]}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:3:27: error: udp port 53 on 127.0.0.1 is already claimed by service 'a' "
                    + "(udp port 53 on 0.0.0.0, at 2:27)"
            ]
        )
    }

    @Test func ipv4MappedAddressesAreErrors() {
        #expect(
            errorLines(service("bind: [\"::ffff:127.0.0.1\"]")) == [
                "t.yaml:5:12: error: '::ffff:127.0.0.1' is an IPv4-mapped IPv6 address; udpd's IPv6 sockets take "
                    + "no IPv4, so write the IPv4 address itself: 127.0.0.1"
            ]
        )
        #expect(
            errorLines(service("upstream: \"[::ffff:127.0.0.1]:53\"", handler: "forward")) == [
                "t.yaml:5:15: error: 'upstream' must be HOST:PORT or [IPV6]:PORT; '[::ffff:127.0.0.1]:53': "
                    + "'::ffff:127.0.0.1' is an IPv4-mapped address; write the IPv4 address, as in 127.0.0.1:53"
            ]
        )
    }

    @Test func metricsOnATCPServicePort() {
        let yaml = """
            metrics: {listen: "127.0.0.1:9100"}
            services:
              web: {handler: echo, tcp: 9100}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:1:19: error: 'listen' 127.0.0.1:9100 is already claimed by service 'web' (tcp port 9100 "
                    + "on 0.0.0.0, at 3:29); the metrics endpoint needs a TCP port of its own"
            ]
        )
        let udpOnly = "metrics: {listen: \"127.0.0.1:9100\"}\nservices:\n  dns: {handler: echo, udp: 9100}\n"
        #expect(errorLines(udpOnly) == [], "a UDP port does not hold the TCP port")
        let other =
            "metrics: {listen: \"127.0.0.2:9100\"}\nservices:\n  w: {handler: echo, tcp: 9100, bind: [127.0.0.1]}\n"
        #expect(errorLines(other) == [], "another address")
    }

    @Test func wildcardInterfacesMustExistNow() throws {
        let host = HostFacts { $0 == "lo" }
        let yaml = service("interfaces: [lo, nosuch0]")
        #expect(throws: Never.self) { try ConfigurationLoader.parse(text: yaml, file: "t.yaml") }
        do {
            _ = try ConfigurationLoader.parse(text: yaml, file: "t.yaml", host: host)
            Issue.record("a missing interface passed")
        } catch {
            #expect(
                error.errors.map(\.description) == [
                    "t.yaml:5:22: error: interface 'nosuch0' does not exist on this host; a wildcard socket is "
                        + "bound to its interfaces when udpd starts (use 'bind: per-address' to serve interfaces "
                        + "that appear later)"
                ]
            )
        }
        let perAddress = service("bind: per-address\ninterfaces: [nosuch0]")
        #expect(throws: Never.self) { try ConfigurationLoader.parse(text: perAddress, file: "t.yaml", host: host) }
        let scoped = service("bind: [\"fe80::1%nosuch0\"]\nfreebind: true")
        #expect(throws: ConfigurationErrors.self) {
            try ConfigurationLoader.parse(text: scoped, file: "t.yaml", host: host)
        }
    }

    // MARK: a forward into udpd itself (finding 2)

    @Test func forwardIntoItsOwnListener() {
        let yaml = """
            services:
              relay: {handler: forward, udp: 5300, upstream: "127.0.0.1:5300"}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:2:50: error: 'upstream' 127.0.0.1:5300 is udpd's own udp listener (service 'relay', port "
                    + "5300 on 0.0.0.0, at 2:34): forwarding into itself would loop; point 'upstream' at the real "
                    + "server"
            ]
        )
    }

    @Test(arguments: [
        ("{handler: echo, udp: 7}", "127.0.0.1:7", true),  // a wildcard covers loopback
        ("{handler: echo, udp: 7}", "127.9.9.9:7", true),  // all of 127/8
        ("{handler: echo, udp: 7}", "\"[::1]:7\"", true),
        ("{handler: echo, udp: 7, family: ipv4}", "\"[::1]:7\"", false),
        ("{handler: echo, udp: 7}", "0.0.0.0:7", true),  // a connect to 0.0.0.0 reaches the host itself
        ("{handler: echo, udp: 7, bind: per-address}", "127.0.0.1:7", true),
        ("{handler: echo, udp: 7, bind: [192.0.2.1], freebind: true}", "192.0.2.1:7", true),
        ("{handler: echo, udp: 7, bind: [192.0.2.1], freebind: true}", "192.0.2.2:7", false),
        ("{handler: echo, udp: 7, bind: [127.0.0.1]}", "127.0.0.2:7", false),
        ("{handler: echo, udp: 8}", "127.0.0.1:7", false),  // another port
        ("{handler: echo, tcp: 7}", "127.0.0.1:7", false),  // the forward relays UDP; 7 is TCP only
        ("{handler: echo, udp: 7}", "localhost:7", false),  // names are resolved at run time
    ])
    func forwardTargets(echo: String, upstream: String, loops: Bool) {
        let yaml = """
            services:
              echo: \(echo)
              relay: {handler: forward, udp: 5300, upstream: \(upstream)}
            """
        let errors = errorLines(yaml)
        #expect(errors.contains { $0.contains("forwarding into itself") } == loops, "\(errors)")
    }

    @Test func forwardOverTCPIntoATCPListener() {
        let yaml = """
            services:
              web: {handler: echo, tcp: 8080}
              relay: {handler: forward, tcp: 80, upstream: "127.0.0.1:8080"}
            """
        #expect(errorLines(yaml).count == 1)
    }

    // MARK: control characters (finding 5)

    @Test func controlCharactersInANameStayOnTheirLine() {
        let yaml = "services:\n  \"evil\\nt.yaml:1:1: error: forged\\e[31m\": {handler: echo, udp: 7}\n"
        let lines = errorLines(yaml)
        #expect(lines.count == 1)
        for line in lines {
            #expect(!line.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }, "\(line)")
            #expect(line.hasPrefix("t.yaml:2:3: error: service name 'evil\\nt.yaml:1:1: error: forged\\x1b[31m'"))
        }
        let path = errorLines(service("allow: []"), file: "dir\n\u{1b}[2J/t.yaml")
        #expect(path.count == 1)
        #expect(path.first?.hasPrefix("dir\\n\\x1b[2J/t.yaml:5:12: error: ") == true)
    }

    @Test func escaping() {
        #expect(TextEscaping.escaped("plain text, with \\ and ü") == "plain text, with \\ and ü")
        #expect(TextEscaping.escaped("a\nb\r\tc\u{1b}[0m\u{7f}") == "a\\nb\\r\\tc\\x1b[0m\\x7f")
        #expect(TextEscaping.escaped("\u{85}\u{2028}\u{202e}x") == "\\u{85}\\u{2028}\\u{202e}x")
        let once = TextEscaping.escaped("x\u{0}\u{1b}y")
        #expect(TextEscaping.escaped(once) == once, "escaping twice changes nothing")
    }

    // MARK: the model

    @Test func servicesCompareEveryFieldButThePosition() {
        var a = ServiceDefinition(name: "s", handler: .exec, udpPorts: [7], position: .init(line: 1, column: 1))
        var b = a
        b.position = SourcePosition(line: 9, column: 9)
        #expect(a == b)
        b.group = "staff"
        #expect(a != b, "the last field is compared too")
        b = a
        b.user = "nobody"
        #expect(a != b)
        a.allow = [AddressPrefix(address: BindAddress(text: "10.0.0.0", family: .ipv4), length: 8)]
        b = a
        b.allow[0].address.position = SourcePosition(line: 3, column: 3)
        #expect(a == b)
    }
}
