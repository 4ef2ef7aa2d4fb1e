import Testing
import UDPDKerberos

@Suite("DER encoding: the bytes X.690 prescribes")
struct DEREncodingTests {
    @Test(
        "INTEGER in the fewest two's-complement octets",
        arguments: [
            (0, [0x02, 0x01, 0x00]), (127, [0x02, 0x01, 0x7f]), (128, [0x02, 0x02, 0x00, 0x80]),
            (256, [0x02, 0x02, 0x01, 0x00]), (-1, [0x02, 0x01, 0xff]), (-128, [0x02, 0x01, 0x80]),
            (-129, [0x02, 0x02, 0xff, 0x7f]),
            (Int64.max, [0x02, 0x08, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            (Int64.min, [0x02, 0x08, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ] as [(Int64, [UInt8])]
    )
    func integer(value: Int64, bytes: [UInt8]) throws {
        #expect(DERNode.integer(value).encoded == bytes)
        let decoded = try bytes.withUnsafeBytes { raw throws(DERError) in
            var reader = try DERReader(raw)
            let element = try reader.read(.integer)
            return try reader.integer(element)
        }
        #expect(decoded == value)
    }

    @Test("lengths: short form below 128, then the shortest long form")
    func lengths() {
        #expect(DERNode.octetString([]).encoded == [0x04, 0x00])
        #expect(DERNode.octetString(Array(repeating: 7, count: 127)).encoded.prefix(2) == [0x04, 0x7f])
        #expect(DERNode.octetString(Array(repeating: 7, count: 128)).encoded.prefix(3) == [0x04, 0x81, 0x80])
        #expect(DERNode.octetString(Array(repeating: 7, count: 300)).encoded.prefix(4) == [0x04, 0x82, 0x01, 0x2c])
        let big = DERNode.octetString(Array(repeating: 7, count: 70_000))
        #expect(big.encoded.prefix(5) == [0x04, 0x83, 0x01, 0x11, 0x70])
        #expect(big.encoded.count == 70_005 && big.encodedCount == 70_005)
    }

    @Test("tags: classes, the constructed bit, and the high-number form")
    func tags() {
        #expect(DERNode.sequence([]).encoded == [0x30, 0x00])
        #expect(DERNode.field(1, .integer(5)).encoded == [0xa1, 0x03, 0x02, 0x01, 0x05])
        #expect(DERNode.application(30, .sequence([])).encoded == [0x7e, 0x02, 0x30, 0x00])
        #expect(DERNode.primitive(DERTag(.application, 31, constructed: false), []).encoded == [0x5f, 0x1f, 0x00])
        #expect(DERNode.constructed(DERTag(.private, 200, constructed: true), []).encoded == [0xff, 0x81, 0x48, 0x00])
        #expect(
            DERNode.primitive(DERTag(.contextSpecific, 16_384, constructed: false), []).encoded == [
                0x9f, 0x81, 0x80, 0x00, 0x00,
            ]
        )
    }

    @Test("strings, bit strings and KerberosTime")
    func strings() {
        #expect(DERNode.generalString("A.B").encoded == [0x1b, 0x03, 0x41, 0x2e, 0x42])
        #expect(DERNode.bitString([0, 0, 0, 0]).encoded == [0x03, 0x05, 0x00, 0, 0, 0, 0])
        #expect(DERNode.generalizedTime(secondsSince1970: 0).encoded == [0x18, 0x0f] + Array("19700101000000Z".utf8))
        #expect(time(2_136_422_885) == "20370913024805Z")
        #expect(time(951_782_400) == "20000229000000Z")  // a leap day of a century leap year
        #expect(time(4_107_542_399) == "21000228235959Z")  // 2100 is no leap year
        #expect(time(-1) == "19691231235959Z")
    }

    func time(_ seconds: Int64) -> String {
        guard case .primitive(_, let bytes) = DERNode.generalizedTime(secondsSince1970: seconds) else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("a PrincipalName, byte for byte")
    func principalName() {
        let name = KerberosPrincipalName(nameType: 1, components: ["a"])
        #expect(
            name.der.encoded == [
                0x30, 0x0c, 0xa0, 0x03, 0x02, 0x01, 0x01, 0xa1, 0x05, 0x30, 0x03, 0x1b, 0x01, 0x61,
            ]
        )
    }

    @Test("an AS-REQ, byte for byte (the layout MIT kinit sends, checked against `openssl asn1parse`)")
    func asRequest() {
        let request = KerberosASRequest(
            client: KerberosPrincipalName(nameType: 1, components: ["p"]),
            realm: "R",
            nonce: 0x0102_0304,
            encryptionTypes: [18]
        )
        let body: [UInt8] =
            [0x30, 0x58]
            + [0xa0, 0x07, 0x03, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00]
            + [0xa1, 0x0e, 0x30, 0x0c, 0xa0, 0x03, 0x02, 0x01, 0x01, 0xa1, 0x05, 0x30, 0x03, 0x1b, 0x01, 0x70]
            + [0xa2, 0x03, 0x1b, 0x01, 0x52]
            + [0xa3, 0x16, 0x30, 0x14, 0xa0, 0x03, 0x02, 0x01, 0x02, 0xa1, 0x0d, 0x30, 0x0b]
            + [0x1b, 0x06] + Array("krbtgt".utf8) + [0x1b, 0x01, 0x52]
            + [0xa5, 0x11, 0x18, 0x0f] + Array("20370913024805Z".utf8)
            + [0xa7, 0x06, 0x02, 0x04, 0x01, 0x02, 0x03, 0x04]
            + [0xa8, 0x05, 0x30, 0x03, 0x02, 0x01, 0x12]
        let expected: [UInt8] =
            [0x6a, 0x68, 0x30, 0x66, 0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01, 0x0a, 0xa4, 0x5a] + body
        #expect(request.encoded == expected)
    }

    @Test("a KRB-ERROR built here decodes as one, with its code")
    func errorRoundTrip() throws {
        let error = KerberosErrorMessage(
            errorCode: KerberosErrorMessage.responseTooBig,
            serverTime: 1_700_000_000,
            serverMicroseconds: 12,
            realm: "EXAMPLE.COM",
            server: .ticketGrantingService(realm: "EXAMPLE.COM"),
            text: "retry over TCP"
        )
        let bytes = error.encoded
        #expect(bytes.first == 0x7e)
        let reply = try bytes.withUnsafeBytes { raw throws(DERError) in try KerberosReply.decode(raw) }
        #expect(reply == .error(code: 52))
        let tree = try bytes.withUnsafeBytes { raw throws(DERError) in try DERNode.parse(raw) }
        #expect(tree == error.der)
    }
}
