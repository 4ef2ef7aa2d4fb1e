import Testing

@testable import UDPDConfig

/// Bind addresses, prefixes and HOST:PORT values.
@Suite struct AddressTests {
    @Test func addressesAreCanonical() {
        #expect(AddressParsing.address("127.0.0.1") == BindAddress(text: "127.0.0.1", family: .ipv4))
        #expect(AddressParsing.address("0:0::1") == BindAddress(text: "::1", family: .ipv6))
        #expect(AddressParsing.address("FE80::1%eth0") == BindAddress(text: "fe80::1%eth0", family: .ipv6))
        for bad in ["", "1.2.3", "1.2.3.256", "::g", "127.0.0.1%eth0", "fe80::1%", "[::1]", "localhost"] {
            #expect(AddressParsing.address(bad) == nil, "\(bad)")
        }
    }

    @Test func prefixes() throws {
        #expect(try AddressParsing.prefix("10.0.0.0/8").get().description == "10.0.0.0/8")
        #expect(try AddressParsing.prefix("2001:db8::/32").get().description == "2001:db8::/32")
        #expect(try AddressParsing.prefix("192.0.2.7").get().description == "192.0.2.7/32")
        #expect(try AddressParsing.prefix("::1").get().description == "::1/128")
        #expect(AddressParsing.prefix("10.0.0.1/8") == .failure(.hostBitsSet(network: "10.0.0.0/8")))
        #expect(AddressParsing.prefix("10.0.0.0/33") == .failure(.malformed))
        #expect(AddressParsing.prefix("10.0.0.0/") == .failure(.malformed))
    }

    @Test func hostPorts() throws {
        #expect(try AddressParsing.hostPort("127.0.0.1:10088").get() == HostPort(host: "127.0.0.1", port: 10088))
        #expect(try AddressParsing.hostPort("[::1]:88").get() == HostPort(host: "::1", port: 88))
        #expect(try AddressParsing.hostPort("kdc.example.com:88").get() == HostPort(host: "kdc.example.com", port: 88))
        #expect(try AddressParsing.hostPort("[fe80::1%eth0]:88").get() == HostPort(host: "fe80::1%eth0", port: 88))
    }

    @Test func invalidBindAddress() {
        #expect(
            errorLines(service("bind: [127.0.0.1, \"999.1.1.1\"]"))
                == ["t.yaml:5:23: error: '999.1.1.1' is not an IPv4 or IPv6 address"]
        )
    }

    @Test func bracketedBindAddressGetsAHint() {
        #expect(
            errorLines(service("bind: [\"[::1]\"]"))
                == ["t.yaml:5:12: error: '[::1]' is not an IPv4 or IPv6 address; write IPv6 addresses without brackets"]
        )
    }

    @Test func singleBindAddressGetsAHint() {
        #expect(
            errorLines(service("bind: 127.0.0.1")) == [
                "t.yaml:5:11: error: 'bind' must be wildcard, per-address or a list of addresses, found '127.0.0.1'; "
                    + "write a single address as a list: [127.0.0.1]"
            ]
        )
    }

    @Test func addressContradictsFamily() {
        #expect(
            errorLines(service("family: ipv4\nbind: [127.0.0.1, \"::1\"]"))
                == ["t.yaml:6:23: error: '::1' is an IPv6 address, but 'family' is ipv4"]
        )
    }

    @Test func duplicateBindAddress() {
        #expect(
            errorLines(service("bind: [\"::1\", \"0::1\"]"))
                == ["t.yaml:5:19: error: duplicate address '::1' (first at 5:12)"]
        )
    }

    @Test func emptyBindList() {
        #expect(errorLines(service("bind: []")) == ["t.yaml:5:11: error: 'bind' must list at least one address"])
    }

    @Test func unknownFamily() {
        #expect(
            errorLines(service("family: inet"))
                == ["t.yaml:5:13: error: unknown family 'inet' (expected one of: ipv4, ipv6, dual)"]
        )
    }

    @Test func upstreamIPv6NeedsBrackets() {
        #expect(
            errorLines(service("upstream: \"::1:88\"", handler: "forward")) == [
                "t.yaml:5:15: error: 'upstream' must be HOST:PORT or [IPV6]:PORT; '::1:88': "
                    + "write an IPv6 address in brackets, as in [::1]:88"
            ]
        )
    }

    @Test func upstreamWithoutPort() {
        #expect(
            errorLines(service("upstream: \"[::1]\"", handler: "forward"))
                == [
                    "t.yaml:5:15: error: 'upstream' must be HOST:PORT or [IPV6]:PORT; '[::1]': "
                        + "missing ':PORT' after ']'"
                ]
        )
    }

    @Test func upstreamPortOutOfRange() {
        #expect(
            errorLines(service("upstream: kdc:0", handler: "forward")) == [
                "t.yaml:5:15: error: 'upstream' must be HOST:PORT or [IPV6]:PORT; 'kdc:0': "
                    + "the port must be a number 1-65535, found '0'"
            ]
        )
    }

    @Test func upstreamWithMistypedIPv4() {
        #expect(
            errorLines(service("upstream: 10.0.0.256:88", handler: "forward")) == [
                "t.yaml:5:15: error: 'upstream' must be HOST:PORT or [IPV6]:PORT; '10.0.0.256:88': "
                    + "'10.0.0.256' is neither an IP address nor a host name"
            ]
        )
    }

    @Test func allowPrefixWithHostBits() {
        #expect(
            errorLines(service("allow: [10.0.0.1/8]")) == [
                "t.yaml:5:13: error: '10.0.0.1/8' has bits set beyond the prefix length; did you mean '10.0.0.0/8'?"
            ]
        )
    }

    @Test func denyMalformedPrefix() {
        #expect(
            errorLines(service("deny: [2001:db8::/129]")) == [
                "t.yaml:5:12: error: '2001:db8::/129' is not an address prefix such as 10.0.0.0/8 or 2001:db8::/32"
            ]
        )
    }
}
