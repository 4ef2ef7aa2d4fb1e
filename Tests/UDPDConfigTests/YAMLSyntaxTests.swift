import Testing

@testable import UDPDConfig

/// Problems at the YAML level: they stop decoding, so each file reports only them.
@Suite struct YAMLSyntaxTests {
    @Test func syntaxErrorReportsLibyamlProblemAndContext() {
        #expect(
            errorLines("services:\n  echo: [7\n")
                == [
                    "t.yaml:3:1: error: YAML syntax error: did not find expected ',' or ']' "
                        + "(while parsing a flow sequence at 2:9)"
                ]
        )
    }

    @Test func badIndentationIsASyntaxError() {
        #expect(
            errorLines("services:\n  a:\n    handler: echo\n   udp: 7\n")
                == [
                    "t.yaml:4:4: error: YAML syntax error: did not find expected key "
                        + "(while parsing a block mapping at 2:3)"
                ]
        )
    }

    @Test func secondDocumentIsAnErrorAtItsStart() {
        #expect(
            errorLines("services: {}\n---\nservices: {}\n")
                == ["t.yaml:2:1: error: a configuration file holds one YAML document; a second starts here"]
        )
    }

    @Test func aliasesAreRejected() {
        #expect(
            errorLines("services:\n  a: &x {handler: echo, udp: 7}\n  b: *x\n")
                == ["t.yaml:3:6: error: YAML aliases ('*x') are not supported; write the value out"]
        )
    }

    @Test func tagsOtherThanStrAreRejected() {
        #expect(
            errorLines("services: !!set {}\n")
                == ["t.yaml:1:11: error: YAML tags ('tag:yaml.org,2002:set') are not supported"]
        )
    }

    @Test func strTagMakesAScalarText() {
        #expect(
            errorLines(service(ports: "udp: !!str 7"))
                == ["t.yaml:4:10: error: expected a udp port number (1-65535), found the string \"7\""]
        )
    }

    @Test func topLevelMustBeAMapping() {
        #expect(errorLines("- a\n- b\n") == ["t.yaml:1:1: error: the top level must be a mapping, found a list"])
    }

    @Test func emptyFileDefinesNoServices() {
        let expected = ["t.yaml:1:1: error: the file defines no services (expected a 'services:' mapping)"]
        #expect(errorLines("") == expected)
        #expect(errorLines("# only a comment\n") == expected)
    }

    @Test func missingServicesIsAnError() {
        #expect(
            errorLines("log:\n  level: info\n")
                == ["t.yaml:1:1: error: the file defines no services (expected a 'services:' mapping)"]
        )
    }

    @Test func emptyServicesMappingIsValid() throws {
        let configuration = try ConfigurationLoader.parse(text: "services: {}\n", file: "t.yaml")
        #expect(configuration.services.isEmpty)
    }

    @Test func deepNestingIsRefused() {
        let yaml = "services: " + String(repeating: "[", count: 100)
        #expect(errorLines(yaml) == ["t.yaml:1:74: error: the document nests more than 64 levels deep"])
    }
}
