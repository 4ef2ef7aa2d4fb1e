import Testing

@testable import UDPDConfig

/// Good files decode into the expected model values.
@Suite struct ConfigurationDecodingTests {
    /// The example of `INTERFACE.md`, verbatim.
    static let interfaceExample = """
        control:
          socket: /run/udpd/control.sock   # optional
          mode: "0660"                     # optional, octal string
        log:
          level: info                      # trace | debug | info | notice | warning | error | critical
        services:
          echo:                            # the service's name: [A-Za-z0-9_.-]+
            handler: echo                  # echo | discard | forward | exec
            udp: 7                         # a port or a list of ports; at least one of udp/tcp
            tcp: [7]
            bind: wildcard                 # wildcard (default) | per-address | a list of addresses
            family: dual                   # ipv4 | ipv6 | dual (default)
          kdc:
            handler: forward
            udp: [88]
            tcp: [88]
            upstream: 127.0.0.1:10088      # forward only: HOST:PORT, [V6]:PORT
          hello:
            handler: exec
            tcp: 7070
            command: [/usr/bin/printf, "hello\\n"]   # exec only: argv, no shell
        """

    @Test func interfaceExampleDecodes() throws {
        let configuration = try ConfigurationLoader.parse(text: Self.interfaceExample, file: "services.yaml")
        var kdc = ServiceDefinition(name: "kdc", handler: .forward, udpPorts: [88], tcpPorts: [88])
        kdc.upstreams = [HostPort(host: "127.0.0.1", port: 10088)]
        var hello = ServiceDefinition(name: "hello", handler: .exec, tcpPorts: [7070])
        hello.command = ["/usr/bin/printf", "hello\n"]
        let expected = Configuration(
            file: "services.yaml",
            control: ControlSettings(socket: "/run/udpd/control.sock", mode: 0o660),
            log: LogSettings(level: .info),
            services: [
                ServiceDefinition(name: "echo", handler: .echo, udpPorts: [7], tcpPorts: [7]), kdc, hello,
            ]
        )
        #expect(configuration == expected)
        #expect(
            configuration.services.map(\.position) == [
                SourcePosition(line: 7, column: 3), SourcePosition(line: 13, column: 3),
                SourcePosition(line: 18, column: 3),
            ]
        )
    }

    @Test func defaultsApplyWhenSectionsAreAbsent() throws {
        let configuration = try ConfigurationLoader.parse(
            text: "services:\n  d: {handler: discard, udp: 9}\n",
            file: "f"
        )
        #expect(configuration.control == ControlSettings())
        #expect(configuration.log.level == .info)
        #expect(configuration.services[0].bind == .wildcard)
        #expect(configuration.services[0].family == .dual)
    }

    @Test func portListsFamiliesAndAddresses() throws {
        let yaml = """
            log: {level: debug}
            services:
              a:
                handler: discard
                udp: [9, 1009, 65535]
                family: ipv6
                bind: ["::1", "FE80::1%eth0"]
              b:
                handler: echo
                tcp: 1
                family: ipv4
                bind: [127.0.0.1]
            """
        let configuration = try ConfigurationLoader.parse(text: yaml, file: "f")
        #expect(configuration.log.level == .debug)
        let a = configuration.services[0]
        #expect(a.udpPorts == [9, 1009, 65535])
        #expect(a.family == .ipv6)
        #expect(
            a.bind
                == .addresses([
                    BindAddress(text: "::1", family: .ipv6), BindAddress(text: "fe80::1%eth0", family: .ipv6),
                ])
        )
        #expect(configuration.services[1].bind == .addresses([BindAddress(text: "127.0.0.1", family: .ipv4)]))
    }

    @Test(arguments: [
        ("127.0.0.1:10088", HostPort(host: "127.0.0.1", port: 10088)),
        ("\"[::1]:88\"", HostPort(host: "::1", port: 88)),
        ("kdc.example.com:88", HostPort(host: "kdc.example.com", port: 88)),
        ("\"[2001:DB8::1]:750\"", HostPort(host: "2001:db8::1", port: 750)),
    ])
    func upstreamForms(written: String, expected: HostPort) throws {
        let configuration = try ConfigurationLoader.parse(
            text: service("upstream: \(written)", handler: "forward"),
            file: "f"
        )
        #expect(configuration.services[0].upstreams == [expected])
    }

    @Test func furtherKeysDecodeIntoTheModel() {
        let yaml = """
            user: daemon
            group: nogroup
            metrics: {listen: "[::1]:9100"}
            services:
              kdc:
                handler: forward
                udp: 88
                tcp: 88
                upstream: 127.0.0.1:10088
                bind: [127.0.0.1, 192.0.2.1]
                interfaces: [lo, eth0]
                freebind: true
                workers: 4
                max-datagram: 64KiB
                rate-limit: {per-source: 100/s, burst: 20}
                allow: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]
                deny: ["::1"]
                max-connections: 512
                max-connections-per-source: 8
                idle-timeout: 500ms
                framing: krb5
                max-message: 1MiB
                timeout: 2m
                max-sessions: 1000
              run:
                handler: exec
                tcp: 7070
                command: [/bin/cat]
                timeout: 1h
                max-instances: 3
            """
        let (configuration, errors) = decodeIgnoringErrors(yaml)
        #expect(errors.isEmpty, "\(errors)")
        #expect(configuration.user == "daemon")
        #expect(configuration.group == "nogroup")
        #expect(configuration.metrics == MetricsSettings(listen: HostPort(host: "::1", port: 9100)))
        let kdc = configuration.services[0]
        #expect(kdc.interfaces == ["lo", "eth0"])
        #expect(kdc.freebind)
        #expect(kdc.workers == 4)
        #expect(kdc.maxDatagram == 65536)
        #expect(kdc.rateLimit == RateLimit(perSecond: 100, burst: 20))
        #expect(kdc.allow.map(\.description) == ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"])
        #expect(kdc.deny.map(\.description) == ["::1/128"])
        #expect(kdc.maxConnections == 512)
        #expect(kdc.maxConnectionsPerSource == 8)
        #expect(kdc.idleTimeout == .milliseconds(500))
        #expect(kdc.framing == .krb5)
        #expect(kdc.maxMessage == 1 << 20)
        #expect(kdc.timeout == .seconds(120))
        #expect(kdc.maxSessions == 1000)
        let run = configuration.services[1]
        #expect(run.command == ["/bin/cat"])
        #expect(run.timeout == .seconds(3600))
        #expect(run.maxInstances == 3)
    }

    @Test func rateLimitBurstDefaultsToTheRate() {
        let (configuration, _) = decodeIgnoringErrors(service("rate-limit: {per-source: 50/s}"))
        #expect(configuration.services[0].rateLimit == RateLimit(perSecond: 50, burst: 50))
    }

    @Test("over-limit: drop by default, krb5-tcp when asked, anything else an error at its position")
    func rateLimitOverLimit() {
        let (plain, _) = decodeIgnoringErrors(service("rate-limit: {per-source: 50/s}"))
        #expect(plain.services[0].rateLimit?.overLimit == .drop)
        let (kerberos, errors) = decodeIgnoringErrors(service("rate-limit: {per-source: 1/s, over-limit: krb5-tcp}"))
        #expect(errors.isEmpty, "\(errors)")
        #expect(kerberos.services[0].rateLimit == RateLimit(perSecond: 1, burst: 1, overLimit: .krb5TCP))
        #expect(
            errorLines(service("rate-limit: {per-source: 1/s, over-limit: krb5}")) == [
                "t.yaml:5:47: error: unknown over-limit 'krb5' (expected one of: drop, krb5-tcp)"
            ]
        )
    }

    @Test("transparent: a forward's boolean, false by default, refused on other handlers at its position")
    func transparent() {
        let forward = "upstream: [\"127.0.0.1:88\"]\ntransparent: true"
        let (configuration, errors) = decodeIgnoringErrors(service(forward, handler: "forward"))
        #expect(errors.isEmpty, "\(errors)")
        #expect(configuration.services[0].transparent)
        let (plain, _) = decodeIgnoringErrors(service("upstream: [\"127.0.0.1:88\"]", handler: "forward"))
        #expect(!plain.services[0].transparent)
        let refused = errorLines(service("transparent: true"))
        #expect(refused.count == 1 && refused[0].hasPrefix("t.yaml:5:5: error:") && refused[0].contains("transparent"))
    }

    @Test func plainOctalModeIsReadAsOctal() throws {
        let configuration = try ConfigurationLoader.parse(text: "control: {mode: 0640}\nservices: {}\n", file: "f")
        #expect(configuration.control.mode == 0o640)
    }
}
