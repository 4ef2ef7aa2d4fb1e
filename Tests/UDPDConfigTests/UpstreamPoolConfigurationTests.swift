import Testing

@testable import UDPDConfig

/// `upstream:` as a list and `health-check:` (issue 15): what they decode to, and each mistake refused at its
/// position.
@Suite struct UpstreamPoolConfigurationTests {
    @Test func aListKeepsItsOrderAndASingleUpstreamIsAListOfOne() throws {
        let list = try ConfigurationLoader.parse(
            text: service("upstream: [10.0.0.5:88, \"[2001:db8::6]:88\", kdc3.example:750]", handler: "forward"),
            file: "t.yaml"
        )
        #expect(
            list.services[0].upstreams == [
                HostPort(host: "10.0.0.5", port: 88), HostPort(host: "2001:db8::6", port: 88),
                HostPort(host: "kdc3.example", port: 750),
            ]
        )
        let single = try ConfigurationLoader.parse(
            text: service("upstream: 10.0.0.5:88", handler: "forward"),
            file: "f"
        )
        #expect(single.services[0].upstreams == [HostPort(host: "10.0.0.5", port: 88)])
        #expect(single.services[0].healthCheck == HealthCheck())
    }

    @Test func anEmptyListADuplicateAndABadEntryAreErrorsAtTheirPositions() {
        #expect(
            errorLines(service("upstream: []", handler: "forward")) == [
                "t.yaml:5:15: error: 'upstream' must list at least one HOST:PORT"
            ]
        )
        #expect(
            errorLines(service("upstream: [10.0.0.5:88, 10.0.0.6:88, 10.0.0.5:88]", handler: "forward")) == [
                "t.yaml:5:42: error: duplicate upstream 10.0.0.5:88 (first at 5:16): a request goes to one upstream, "
                    + "so listing one twice means nothing"
            ]
        )
        let bad = errorLines(service("upstream: [10.0.0.5:88, kdc]", handler: "forward"))
        #expect(bad.count == 1 && bad[0].hasPrefix("t.yaml:5:29: error: each item of 'upstream' must be HOST:PORT"))
        let many = (1...65).map { "10.0.0.\($0):88" }.joined(separator: ", ")
        #expect(
            errorLines(service("upstream: [\(many)]", handler: "forward")) == [
                "t.yaml:5:15: error: 'upstream' lists 65 upstreams; it may list 1 to 64 (upstreams of one service)"
            ]
        )
    }

    @Test func anEntryThatIsUdpdsOwnListenerIsAnErrorAtThatEntry() {
        let yaml = """
            services:
              dns: {handler: echo, udp: 5300}
              relay: {handler: forward, udp: 53, upstream: [192.0.2.1:53, 127.0.0.1:5300]}
            """
        let errors = errorLines(yaml)
        #expect(errors.count == 1, "\(errors)")
        #expect(
            errors.first?.hasPrefix("t.yaml:3:63: error: 'upstream' 127.0.0.1:5300 is udpd's own udp listener") == true
        )
    }

    @Test func healthCheckDecodesWithItsDefaults() throws {
        let yaml = service(
            "upstream: [10.0.0.5:88, 10.0.0.6:88]\nhealth-check: {probe: krb5, interval: 2s, fall: 5}",
            handler: "forward"
        )
        let check = try ConfigurationLoader.parse(text: yaml, file: "t.yaml").services[0].healthCheck
        #expect(
            check == HealthCheck(probe: .krb5, interval: .seconds(2), timeout: .milliseconds(500), fall: 5, rise: 2)
        )
        #expect(
            HealthCheck()
                == HealthCheck(
                    probe: .none,
                    interval: .seconds(1),
                    timeout: .milliseconds(500),
                    fall: 3,
                    rise: 2
                )
        )
    }

    @Test func healthCheckMistakesAreErrorsAtTheirPositions() {
        #expect(
            errorLines(service("upstream: 10.0.0.5:88\nhealth-check: {timeout: 1s}", handler: "forward")) == [
                "t.yaml:6:29: error: the health check's 'timeout' (1s) must be shorter than its 'interval' (1s): a "
                    + "probe must end before the next starts"
            ]
        )
        let short = errorLines(service("upstream: 10.0.0.5:88\nhealth-check: {interval: 100ms}", handler: "forward"))
        #expect(short.count == 1 && short[0].contains("default 'timeout' (500ms)"), "\(short)")
        let unknown = errorLines(service("upstream: 10.0.0.5:88\nhealth-check: {probe: http}", handler: "forward"))
        #expect(unknown.count == 1 && unknown[0].hasPrefix("t.yaml:6:27: error: unknown probe 'http'"), "\(unknown)")
        let key = errorLines(service("upstream: 10.0.0.5:88\nhealth-check: {rais: 2}", handler: "forward"))
        #expect(key.count == 1 && key[0].contains("unknown key 'rais'"), "\(key)")
        #expect(
            errorLines(service("health-check: {probe: dns}")) == [
                "t.yaml:5:5: error: 'health-check' is only valid for handler 'forward'"
            ]
        )
    }
}
