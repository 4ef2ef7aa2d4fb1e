import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

@testable import UDPDConfig

/// Every number of the configuration has a range (``ConfigurationBounds``), checked with a position; the man page
/// lists the same ranges.
@Suite struct ConfigurationBoundsTests {
    /// The values of issue 12 that `--check` accepted and that then trapped the daemon on the first datagram or
    /// connection (or at start), each now refused at its value.
    @Test func valuesThatCrashedTheDaemonAreRefusedWithTheirPosition() {
        let forward = "upstream: 127.0.0.1:88"
        #expect(
            errorLines(service("\(forward)\ntimeout: 20000000000s", handler: "forward")) == [
                "t.yaml:6:14: error: 'timeout' must be from 1ms to 168h (a week at most), found '20000000000s'"
            ]
        )
        #expect(
            errorLines(service("rate-limit: {per-source: 100/s, burst: 20000000000000}")) == [
                "t.yaml:5:44: error: 'burst' must be from 1 to 1000000 (replies sent at once to one source), "
                    + "found '20000000000000'"
            ]
        )
        #expect(
            errorLines(service("idle-timeout: 2562048h", ports: "tcp: 7")) == [
                "t.yaml:5:19: error: 'idle-timeout' must be from 1ms to 168h (a week at most), found '2562048h'"
            ]
        )
        #expect(
            errorLines(service("\(forward)\nmax-sessions: 4611686018427387904", handler: "forward")) == [
                "t.yaml:6:19: error: 'max-sessions' must be from 1 to 1048576 (each session holds a socket), "
                    + "found '4611686018427387904'"
            ]
        )
        #expect(
            errorLines(service("workers: 9223372036854775807")) == [
                "t.yaml:5:14: error: 'workers' must be from 1 to 1024 (threads serving each UDP port), "
                    + "found '9223372036854775807'"
            ]
        )
    }

    /// For each key: its minimum and maximum are accepted, one past the maximum and a number beyond 64 bits are out
    /// of range (not "malformed"), zero is refused as not positive.
    @Test(arguments: BoundedKey.all)
    func eachKeyTakesItsWholeRangeAndNothingBeyond(_ key: BoundedKey) throws {
        for valid in [key.minimum, key.maximum] {
            #expect(errorLines(key.yaml(valid)) == [], "\(key.name): \(valid)")
        }
        for invalid in [key.pastMaximum, "99999999999999999999999" + key.suffix] {
            let lines = errorLines(key.yaml(invalid))
            #expect(lines.count == 1, "\(key.name): \(invalid)")
            let expected = "error: '\(key.name)' must be from \(key.bound.rangeText) (\(key.bound.reason)), "
                + "found '\(invalid)'"
            #expect(lines.first?.hasSuffix(expected) == true, "\(lines)")
        }
        let zero = errorLines(key.yaml("0" + key.suffix))
        #expect(zero.count == 1 && zero[0].contains("'\(key.name)' must be a "), "\(zero)")
    }

    /// The decoded value is the one written, at the maximum too (no unit lost, nothing rounded).
    @Test func maximaDecodeToTheirValues() throws {
        let yaml = """
            batch-size: 1024
            services:
              u:
                handler: forward
                upstream: 127.0.0.1:88
                udp: 7
                tcp: 7
                workers: 1024
                max-datagram: 64KiB
                rate-limit: {per-source: 1000000/s, burst: 1000000}
                max-connections: 1048576
                max-connections-per-source: 1048576
                idle-timeout: 168h
                framing: krb5
                max-message: 64MiB
                timeout: 168h
                max-sessions: 1048576
              x:
                handler: exec
                command: [/bin/cat]
                udp: 8
                max-instances: 4096
            """
        let configuration = try ConfigurationLoader.parse(text: yaml, file: "t.yaml")
        let u = configuration.services[0]
        #expect(configuration.batchSize == 1024)
        #expect(u.workers == 1024 && u.maxDatagram == 65536)
        #expect(u.rateLimit == RateLimit(perSecond: 1_000_000, burst: 1_000_000))
        #expect(u.maxConnections == 1_048_576 && u.maxConnectionsPerSource == 1_048_576)
        #expect(u.idleTimeout == .seconds(604_800) && u.timeout == .seconds(604_800))
        #expect(u.maxMessage == 64 << 20 && u.maxSessions == 1_048_576)
        #expect(configuration.services[1].maxInstances == 4096)
    }

    /// udpd.yaml(5) lists every range of the table, in the words the decoder uses.
    @Test func theManPageListsEveryRange() throws {
        let page = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("man/udpd.yaml.5")
        let lines = try String(contentsOf: page, encoding: .utf8).split(separator: "\n").map(String.init)
        for bound in ConfigurationBounds.all {
            let line = ".It Ic \(bound.key) : No \(bound.rangeText)"
            #expect(lines.contains(line), "man/udpd.yaml.5 lacks '\(line)'")
        }
        let ports = ConfigurationBounds.port.range
        #expect(lines.contains(".It Ic udp , tcp : No \(ports.lowerBound) to \(ports.upperBound)"))
    }

    @Test func rangesReadAsOperatorsWriteThem() {
        #expect(Units.text(bytes: 65536) == "64KiB")
        #expect(Units.text(bytes: 65535) == "65535")
        #expect(Units.text(bytes: 64 << 20) == "64MiB")
        #expect(Units.text(duration: .milliseconds(1)) == "1ms")
        #expect(Units.text(duration: .seconds(90)) == "90s")
        #expect(Units.text(duration: .seconds(7 * 24 * 3600)) == "168h")
        #expect(ConfigurationBounds.ratePerSource.rangeText == "1/s to 1000000/s")
    }

    @Test func unitsTellTooLargeFromMalformed() {
        #expect(Units.readDuration("20000000000000000000s").value == nil)
        if case .tooLarge = Units.readDuration("9999999999999999h") {} else { Issue.record("not tooLarge") }
        if case .tooLarge = Units.readSize("99999999999GiB") {} else { Issue.record("not tooLarge") }
        if case .malformed = Units.readSize("1.5MiB") {} else { Issue.record("not malformed") }
        if case .malformed = Units.readPerSecond("0/s") {} else { Issue.record("not malformed") }
    }
}

/// One bounded key, with the YAML that sets it in an otherwise valid file.
struct BoundedKey: Sendable, CustomTestStringConvertible {
    let bound: any ConfigurationBound
    let minimum: String
    let maximum: String
    let pastMaximum: String
    /// What follows the digits (`ms` for a duration written in milliseconds, `/s` for a rate).
    let suffix: String
    let yaml: @Sendable (String) -> String

    var name: String { bound.key }
    var testDescription: String { name }

    static let all: [BoundedKey] = {
        let forward = "handler: forward\n    upstream: 127.0.0.1:88\n    udp: 7\n    tcp: 7\n"
        @Sendable func service(_ body: String, _ line: String) -> String {
            "services:\n  s:\n    \(body)    \(line)\n"
        }
        return [
            BoundedKey(bound: ConfigurationBounds.batchSize, "1", "1024", "1025", "") {
                "batch-size: \($0)\nservices:\n  s: {handler: echo, udp: 7}\n"
            },
            BoundedKey(bound: ConfigurationBounds.workers, "1", "1024", "1025", "") {
                service(forward, "workers: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.maxDatagram, "1", "65536", "65537", "") {
                service(forward, "max-datagram: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.ratePerSource, "1/s", "1000000/s", "1000001/s", "/s") {
                service(forward, "rate-limit: {per-source: \($0), burst: 1}")
            },
            BoundedKey(bound: ConfigurationBounds.rateBurst, "1", "1000000", "1000001", "") {
                service(forward, "rate-limit: {per-source: 1/s, burst: \($0)}")
            },
            BoundedKey(bound: ConfigurationBounds.maxConnections, "1", "1048576", "1048577", "") {
                service(forward, "max-connections: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.maxConnectionsPerSource, "1", "1048576", "1048577", "") {
                service(forward, "max-connections-per-source: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.idleTimeout, "1ms", "168h", "604800001ms", "ms") {
                service(forward, "idle-timeout: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.maxMessage, "1", "64MiB", "67108865", "") {
                service(forward, "framing: krb5\n    max-message: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.timeout, "1ms", "168h", "169h", "h") {
                service(forward, "timeout: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.maxSessions, "1", "1048576", "1048577", "") {
                service(forward, "max-sessions: \($0)")
            },
            BoundedKey(bound: ConfigurationBounds.healthInterval, "10ms", "1h", "3600001ms", "ms") {
                service(forward, "health-check: {interval: \($0), timeout: 1ms}")
            },
            BoundedKey(bound: ConfigurationBounds.healthTimeout, "1ms", "3599999ms", "3600001ms", "ms") {
                service(forward, "health-check: {interval: 1h, timeout: \($0)}")
            },
            BoundedKey(bound: ConfigurationBounds.healthFall, "1", "100", "101", "") {
                service(forward, "health-check: {fall: \($0)}")
            },
            BoundedKey(bound: ConfigurationBounds.healthRise, "1", "100", "101", "") {
                service(forward, "health-check: {rise: \($0)}")
            },
            BoundedKey(bound: ConfigurationBounds.maxInstances, "1", "4096", "4097", "") {
                service("handler: exec\n    command: [/bin/cat]\n    udp: 7\n", "max-instances: \($0)")
            },
        ]
    }()

    init(
        bound: any ConfigurationBound,
        _ minimum: String,
        _ maximum: String,
        _ pastMaximum: String,
        _ suffix: String,
        yaml: @escaping @Sendable (String) -> String
    ) {
        self.bound = bound
        self.minimum = minimum
        self.maximum = maximum
        self.pastMaximum = pastMaximum
        self.suffix = suffix
        self.yaml = yaml
    }
}
