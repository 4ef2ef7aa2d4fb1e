import Testing

@testable import UDPDConfig

/// Two services claiming the same protocol, address and port.
@Suite struct OverlapTests {
    /// Two services `a` (lines 2-4) and `b` (lines 5-7), each with its own extra line.
    private func twoServices(_ a: String, _ b: String) -> String {
        """
        services:
          a:
            udp: 53
            \(a)
          b:
            udp: [5353, 53]
            \(b)
        """
    }

    @Test func twoWildcardsOnTheSamePort() {
        #expect(
            errorLines(twoServices("handler: echo", "handler: echo")) == [
                "t.yaml:6:17: error: udp port 53 on 0.0.0.0 is already claimed by service 'a' "
                    + "(udp port 53 on 0.0.0.0, at 3:10)"
            ]
        )
    }

    @Test func wildcardOverlapsASpecificAddressOfItsFamily() {
        let yaml = """
            services:
              a: {handler: echo, udp: 53, bind: [127.0.0.1]}
              b: {handler: echo, udp: 53, family: ipv4}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:3:27: error: udp port 53 on 0.0.0.0 is already claimed by service 'a' "
                    + "(udp port 53 on 127.0.0.1, at 2:27)"
            ]
        )
    }

    @Test func differentFamiliesDoNotOverlap() {
        let yaml = """
            services:
              a: {handler: echo, udp: 53, family: ipv4}
              b: {handler: echo, udp: 53, bind: ["::1"]}
            """
        #expect(errorLines(yaml) == [])
    }

    @Test func dualCoversBothFamilies() {
        let yaml = """
            services:
              a: {handler: echo, udp: 53, bind: ["::1"]}
              b: {handler: echo, udp: 53}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:3:27: error: udp port 53 on :: is already claimed by service 'a' (udp port 53 on ::1, at 2:27)"
            ]
        )
    }

    @Test func differentProtocolsDoNotOverlap() {
        let yaml = """
            services:
              a: {handler: echo, udp: 7}
              b: {handler: echo, tcp: 7}
            """
        #expect(errorLines(yaml) == [])
    }

    @Test func distinctSpecificAddressesDoNotOverlap() {
        let yaml = """
            services:
              a: {handler: echo, tcp: 88, bind: [127.0.0.1, "fe80::1%lo"]}
              b: {handler: echo, tcp: 88, bind: [127.0.0.2, "fe80::1%eth0"]}
            """
        #expect(errorLines(yaml) == [])
    }

    @Test func sameSpecificAddressOverlaps() {
        let yaml = """
            services:
              a: {handler: echo, tcp: 88, bind: [127.0.0.1]}
              b: {handler: echo, tcp: [89, 88], bind: [127.0.0.2, 127.0.0.1]}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:3:32: error: tcp port 88 on 127.0.0.1 is already claimed by service 'a' "
                    + "(tcp port 88 on 127.0.0.1, at 2:27)"
            ]
        )
    }

    @Test func oneServiceMayBindTwoAddressesOnOnePort() {
        let yaml = "services:\n  a: {handler: echo, udp: 53, bind: [127.0.0.1, 127.0.0.2, \"::1\"]}\n"
        #expect(errorLines(yaml) == [])
    }

    @Test func perAddressOverlapsEverythingOfItsFamily() {
        let yaml = """
            services:
              a: {handler: echo, udp: 53, bind: [127.0.0.1]}
              b: {handler: echo, udp: 53, bind: per-address, family: ipv4}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:3:27: error: udp port 53 on every IPv4 address is already claimed by service 'a' "
                    + "(udp port 53 on 127.0.0.1, at 2:27)"
            ]
        )
    }

    @Test func thirdServiceNamesTheFirstItOverlaps() {
        let yaml = """
            services:
              a: {handler: echo, udp: 53, family: ipv4}
              b: {handler: echo, udp: 53, family: ipv6}
              c: {handler: echo, udp: 53, bind: ["::1"]}
            """
        #expect(
            errorLines(yaml) == [
                "t.yaml:4:27: error: udp port 53 on ::1 is already claimed by service 'b' (udp port 53 on ::, at 3:27)"
            ]
        )
    }
}
