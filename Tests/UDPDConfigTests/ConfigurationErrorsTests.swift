import Testing

@testable import UDPDConfig

/// Schema errors: each bad file reports the exact `FILE:LINE:COLUMN: error: MESSAGE` lines.
@Suite struct ConfigurationErrorsTests {
    @Test func descriptionFormats() {
        let positioned = ConfigurationError(file: "a.yaml", position: SourcePosition(line: 7, column: 11), message: "m")
        let whole = ConfigurationError(file: "a.yaml", position: nil, message: "m")
        #expect(positioned.description == "a.yaml:7:11: error: m")
        #expect(whole.description == "a.yaml: error: m")
        #expect(
            ConfigurationErrors(errors: [positioned, whole]).description == "a.yaml:7:11: error: m\na.yaml: error: m"
        )
    }

    @Test func threeErrorsAreAllReportedInFileOrder() {
        let yaml = """
            log:
              level: loud
            services:
              a:
                handler: echo
                udp: 0
              b:
                handler: echo
                tcp: 7
                upsteam: x:1
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:2:10: error: unknown log level 'loud' (expected one of: trace, debug, info, notice, warning, "
                    + "error, critical)",
                "t.yaml:6:10: error: udp port 0 is out of range (1-65535)",
                "t.yaml:10:5: error: unknown key 'upsteam'; did you mean 'upstream'?",
            ]
        )
    }

    // MARK: Unknown and duplicate keys

    @Test func unknownTopLevelKeySuggestsNearest() {
        #expect(
            errorLines("servces: {}\n") == [
                "t.yaml:1:1: error: unknown key 'servces'; did you mean 'services'?",
                "t.yaml:1:1: error: the file defines no services (expected a 'services:' mapping)",
            ]
        )
    }

    @Test func unknownServiceKeySuggestsNearest() {
        #expect(
            errorLines(service("upsteam: 127.0.0.1:10088", handler: "forward")) == [
                "t.yaml:2:3: error: service 's' has handler 'forward' but no 'upstream' (HOST:PORT)",
                "t.yaml:5:5: error: unknown key 'upsteam'; did you mean 'upstream'?",
            ]
        )
    }

    @Test func unknownKeyWithoutNearMatchListsValidKeys() {
        #expect(
            errorLines("control:\n  owner: root\nservices: {}\n")
                == ["t.yaml:2:3: error: unknown key 'owner'; expected one of: socket, mode"]
        )
    }

    @Test func duplicateServiceNameIsReportedAtSecond() {
        let yaml = "services:\n  a: {handler: echo, udp: 7}\n  a: {handler: echo, udp: 8}\n"
        #expect(errorLines(yaml) == ["t.yaml:3:3: error: duplicate service 'a' (first at 2:3)"])
    }

    @Test func duplicateKeyInsideAServiceIsReported() {
        #expect(
            errorLines(service("handler: discard")) == ["t.yaml:5:5: error: duplicate key 'handler' (first at 3:5)"]
        )
    }

    @Test func invalidServiceName() {
        let yaml = "services:\n  \"my service\": {handler: echo, udp: 7}\n"
        #expect(
            errorLines(yaml)
                == ["t.yaml:2:3: error: service name 'my service' may contain only letters, digits, '_', '.' and '-'"]
        )
    }

    // MARK: Types

    @Test func servicesAsAList() {
        #expect(errorLines("services: [a, b]\n") == ["t.yaml:1:11: error: 'services' must be a mapping, found a list"])
    }

    @Test func serviceBodyMustBeAMapping() {
        #expect(
            errorLines("services:\n  a:\n")
                == ["t.yaml:2:5: error: service 'a' must be a mapping, found an empty value"]
        )
    }

    @Test func quotedPortIsText() {
        #expect(
            errorLines(service(ports: "udp: \"seven\""))
                == ["t.yaml:4:10: error: expected a udp port number (1-65535), found the string \"seven\""]
        )
    }

    @Test func portsAsAMapping() {
        #expect(
            errorLines(service(ports: "tcp: {a: 1}"))
                == ["t.yaml:4:10: error: 'tcp' must be a port number (1-65535) or a list of them, found a mapping"]
        )
    }

    @Test func bindAsANumber() {
        #expect(
            errorLines(service("bind: 5"))
                == ["t.yaml:5:11: error: 'bind' must be wildcard, per-address or a list of addresses, found '5'"]
        )
    }

    @Test func freebindMustBeABoolean() {
        #expect(
            errorLines(service("bind: [127.0.0.1]\nfreebind: yes")) == [
                "t.yaml:6:15: error: 'freebind' must be true or false, found 'yes'"
            ]
        )
    }

    // MARK: Ports

    @Test func portZero() {
        #expect(errorLines(service(ports: "udp: 0")) == ["t.yaml:4:10: error: udp port 0 is out of range (1-65535)"])
    }

    @Test func portTooLarge() {
        #expect(
            errorLines(service(ports: "tcp: [7, 65536]"))
                == ["t.yaml:4:14: error: tcp port 65536 is out of range (1-65535)"]
        )
    }

    @Test func negativePort() {
        #expect(errorLines(service(ports: "udp: -1")) == ["t.yaml:4:10: error: udp port -1 is out of range (1-65535)"])
    }

    @Test func fractionalPort() {
        #expect(
            errorLines(service(ports: "udp: 7.5"))
                == ["t.yaml:4:10: error: expected a udp port number (1-65535), found '7.5'"]
        )
    }

    @Test func emptyPortList() {
        #expect(
            errorLines(service(ports: "udp: []"))
                == ["t.yaml:4:10: error: 'udp' must list at least one port; remove the key to serve no udp ports"]
        )
    }

    @Test func duplicatePortInAList() {
        #expect(
            errorLines(service(ports: "udp: [7, 8, 7]"))
                == ["t.yaml:4:17: error: duplicate udp port 7 (first at 4:11)"]
        )
    }

    @Test func serviceWithoutPorts() {
        #expect(
            errorLines(service(ports: "family: ipv4"))
                == ["t.yaml:2:3: error: service 's' has neither 'udp' nor 'tcp' ports"]
        )
    }

    // MARK: Handlers

    @Test func missingHandler() {
        #expect(
            errorLines("services:\n  s:\n    udp: 7\n")
                == ["t.yaml:2:3: error: service 's' has no 'handler' (expected one of: echo, discard, forward, exec)"]
        )
    }

    @Test func unknownHandlerSuggestsNearest() {
        #expect(
            errorLines(service(handler: "ech")) == [
                "t.yaml:3:14: error: unknown handler 'ech'; did you mean 'echo'? "
                    + "(expected one of: echo, discard, forward, exec)"
            ]
        )
    }

    @Test func upstreamOnEcho() {
        #expect(
            errorLines(service("upstream: 127.0.0.1:88"))
                == ["t.yaml:5:5: error: 'upstream' is only valid for handler 'forward'"]
        )
    }

    @Test func timeoutOnDiscardNamesBothHandlers() {
        #expect(
            errorLines(service("timeout: 30s", handler: "discard")) == [
                "t.yaml:5:5: error: 'timeout' is only valid for handlers 'forward' and 'exec'"
            ]
        )
    }

    @Test func execWithoutCommand() {
        #expect(
            errorLines(service(handler: "exec", ports: "tcp: 7070"))
                == [
                    "t.yaml:2:3: error: service 's' has handler 'exec' but no 'command' (the program and its arguments)"
                ]
        )
    }

    @Test func execWithRelativeProgram() {
        #expect(
            errorLines(service("command: [printf, hi]", handler: "exec", ports: "tcp: 7070")) == [
                "t.yaml:5:15: error: the program in 'command' must be an absolute path (no shell, no PATH search), "
                    + "found 'printf'"
            ]
        )
    }

    @Test func execWithEmptyCommand() {
        #expect(
            errorLines(service("command: []", handler: "exec", ports: "tcp: 7070"))
                == ["t.yaml:5:14: error: 'command' must not be an empty list"]
        )
    }

    @Test func execCommandAsAString() {
        #expect(
            errorLines(service("command: /bin/true", handler: "exec", ports: "tcp: 7070"))
                == ["t.yaml:5:14: error: 'command' must be a list, found '/bin/true'"]
        )
    }

    // MARK: Control and log

    @Test func controlModeMustBeOctal() {
        #expect(
            errorLines("control:\n  mode: \"0999\"\nservices: {}\n")
                == [
                    "t.yaml:2:9: error: 'mode' must be octal permissions such as \"0660\" (at most 0777), "
                        + "found the string \"0999\""
                ]
        )
    }

    @Test func controlModeAboveMaximum() {
        #expect(
            errorLines("control:\n  mode: \"1777\"\nservices: {}\n")
                == [
                    "t.yaml:2:9: error: 'mode' must be octal permissions such as \"0660\" (at most 0777), "
                        + "found the string \"1777\""
                ]
        )
    }

    @Test func controlSocketMustBeAbsolute() {
        #expect(
            errorLines("control:\n  socket: run/udpd.sock\nservices: {}\n")
                == ["t.yaml:2:11: error: 'socket' must be an absolute path, found 'run/udpd.sock'"]
        )
    }

    @Test func unknownLogLevel() {
        #expect(
            errorLines("log:\n  level: verbose\nservices: {}\n") == [
                "t.yaml:2:10: error: unknown log level 'verbose' "
                    + "(expected one of: trace, debug, info, notice, warning, error, critical)"
            ]
        )
    }

    // MARK: Recognised but not implemented

    @Test func everyTopLevelKeyIsImplemented() {
        let yaml = "user: nobody\ngroup: nogroup\nmetrics: {listen: 127.0.0.1:9100}\nservices: {}\n"
        #expect(errorLines(yaml) == [])
    }

    @Test func perAddressBindIsAccepted() throws {
        let configuration = try ConfigurationLoader.parse(
            text: service("bind: per-address\ninterfaces: [eth0]"),
            file: "t.yaml"
        )
        #expect(configuration.services.first?.bind == .perAddress)
        #expect(configuration.services.first?.interfaces == ["eth0"])
    }

    @Test func explicitAddressesKeepTheirPositions() throws {
        let configuration = try ConfigurationLoader.parse(
            text: service("bind: [127.0.0.1, \"::1\"]\nfreebind: true"),
            file: "t.yaml"
        )
        guard case .addresses(let addresses) = configuration.services.first?.bind else {
            Issue.record("bind is not a list of addresses")
            return
        }
        #expect(
            addresses.map(\.position) == [SourcePosition(line: 5, column: 12), SourcePosition(line: 5, column: 23)]
        )
        #expect(addresses[0] == BindAddress(text: "127.0.0.1", family: .ipv4), "== ignores the position")
        #expect(configuration.services.first?.freebind == true)
    }

    @Test func implementedLimitIsValidated() {
        #expect(
            errorLines(service("rate-limit: {per-source: 100}"))
                == ["t.yaml:5:30: error: 'per-source' must be a rate such as 100/s, found '100'"]
        )
    }

    // MARK: Keys in nested mappings

    @Test func duplicateKeyInANestedMapping() {
        #expect(
            errorLines(service("rate-limit: {per-source: 1/s, per-source: 2/s}")) == [
                "t.yaml:5:35: error: duplicate key 'per-source' (first at 5:18)"
            ]
        )
    }

    @Test func nonTextKeyIsAnError() {
        #expect(errorLines("services:\n  ? [a]\n  : 1\n") == ["t.yaml:2:5: error: keys must be text, found a list"])
    }

    @Test func emptyServicesValueIsAnError() {
        #expect(errorLines("services:\n") == ["t.yaml:1:10: error: 'services' must be a mapping, found an empty value"])
    }
}
