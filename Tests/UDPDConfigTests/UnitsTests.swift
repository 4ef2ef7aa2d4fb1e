import Testing

@testable import UDPDConfig

/// Durations, sizes, rates and the keys that take them.
@Suite struct UnitsTests {
    @Test func durations() {
        #expect(Units.duration("500ms") == .milliseconds(500))
        #expect(Units.duration("30s") == .seconds(30))
        #expect(Units.duration("2m") == .seconds(120))
        #expect(Units.duration("1h") == .seconds(3600))
        for bad in ["30", "0s", "-1s", "1.5s", "s", "10 s", "1d", "99999999999999999h"] {
            #expect(Units.duration(bad) == nil, "\(bad)")
        }
    }

    @Test func sizes() {
        #expect(Units.size("512") == 512)
        #expect(Units.size("64KiB") == 65536)
        #expect(Units.size("1MiB") == 1 << 20)
        #expect(Units.size("2GiB") == 2 << 30)
        for bad in ["0", "64KB", "1.5MiB", "KiB", "-1", "64 KiB"] {
            #expect(Units.size(bad) == nil, "\(bad)")
        }
    }

    @Test func rates() {
        #expect(Units.perSecond("100/s") == 100)
        #expect(Units.perSecond("100") == nil)
        #expect(Units.perSecond("0/s") == nil)
    }

    @Test func durationWithoutUnitIsAnError() {
        let yaml = service("upstream: 127.0.0.1:88\ntimeout: 30", handler: "forward")
        #expect(
            errorLines(yaml) == [
                "t.yaml:6:14: error: 'timeout' must be a positive duration such as 500ms, 30s, 2m or 1h, found '30'"
            ]
        )
    }

    @Test func sizeWithDecimalUnitIsAnError() {
        #expect(
            errorLines(service("max-datagram: 64KB")) == [
                "t.yaml:5:19: error: 'max-datagram' must be a positive size such as 512, 64KiB or 1MiB, found '64KB'"
            ]
        )
    }

    @Test func workersMustBePositive() {
        #expect(
            errorLines(service("workers: 0")) == [
                "t.yaml:5:14: error: 'workers' must be a positive integer, found '0'"
            ]
        )
    }

    @Test func framingOnAServiceWithoutTCP() {
        #expect(
            errorLines(service("framing: krb5")) == [
                "t.yaml:5:5: error: 'framing' applies only to TCP, and this service has no 'tcp' ports"
            ]
        )
    }

    @Test func framingOnExecIsRefused() {
        // An exec program owns its connection's socket, so udpd could not check its frames.
        #expect(
            errorLines(service("command: [/bin/cat]\nframing: krb5", handler: "exec", ports: "tcp: 88")) == [
                "t.yaml:6:5: error: 'framing' is only valid for handlers 'echo', 'discard' and 'forward'"
            ]
        )
    }

    @Test func unknownFraming() {
        #expect(
            errorLines(service("framing: xdr", ports: "tcp: 88")) == [
                "t.yaml:5:14: error: unknown framing 'xdr' (expected one of: krb5)"
            ]
        )
    }

    @Test func workersOnAServiceWithoutUDP() {
        #expect(
            errorLines(service("workers: 2", ports: "tcp: 7")) == [
                "t.yaml:5:5: error: 'workers' applies only to UDP, and this service has no 'udp' ports"
            ]
        )
    }

    @Test func emptyInterfaceName() {
        #expect(
            errorLines(service("interfaces: [eth0, \"\"]")) == [
                "t.yaml:5:24: error: each item of 'interfaces' must not be empty"
            ]
        )
    }

    @Test func freebindWithoutAddressList() {
        #expect(
            errorLines(service("freebind: true")) == [
                "t.yaml:5:5: error: 'freebind' applies only when 'bind' lists addresses"
            ]
        )
    }

    @Test func nearestKey() {
        #expect(NearestKey.suggestion(for: "upsteam", among: Diagnostics.serviceKeys) == "upstream")
        #expect(NearestKey.suggestion(for: "ucp", among: Diagnostics.serviceKeys) == "udp")
        #expect(NearestKey.suggestion(for: "colour", among: Diagnostics.serviceKeys) == nil)
        #expect(NearestKey.editDistance("kitten", "sitting") == 3)
    }

    @Test func batchSizeDecodesWithDefaultAndLimits() throws {
        let services = "services:\n  e: {handler: echo, udp: 7}\n"
        #expect(try ConfigurationLoader.parse(text: services, file: "t.yaml").batchSize == 32)
        let set = try ConfigurationLoader.parse(text: "batch-size: 1024\n" + services, file: "t.yaml")
        #expect(set.batchSize == 1024)
        #expect(
            errorLines("batch-size: 0\n" + services) == [
                "t.yaml:1:13: error: 'batch-size' must be a positive integer, found '0'"
            ]
        )
        #expect(
            errorLines("batch-size: 1025\n" + services) == [
                "t.yaml:1:13: error: 'batch-size' must be from 1 to 1024 (the kernel's limit for one recvmmsg), "
                    + "found '1025'"
            ]
        )
        #expect(
            errorLines("batch-size: [32]\n" + services) == [
                "t.yaml:1:13: error: 'batch-size' must be a positive integer, found a list"
            ]
        )
    }
}
