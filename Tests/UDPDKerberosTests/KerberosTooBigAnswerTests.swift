import Testing
import UDPDKerberos

/// The over-limit answer (`rate-limit.over-limit: krb5-tcp`): a request parsed in place, and the KRB-ERROR written
/// over it compared byte for byte with the one the tree encoder builds from the same fields.
@Suite("Kerberos over-limit answer: KRB_ERR_RESPONSE_TOO_BIG written over the request")
struct KerberosTooBigAnswerTests {
    static let time: Int64 = 1_796_000_000  // 2026-11-29 UTC

    /// A TGS-REQ as a client sends it: padata (an AP-REQ, here opaque bytes), no cname, the service's realm and name.
    static func tgsRequest(realm: String, server: KerberosPrincipalName) -> [UInt8] {
        let body: DERNode = .sequence([
            .field(0, .bitString([0x40, 0x81, 0, 0])),
            .field(2, .generalString(realm)),
            .field(3, server.der),
            .field(5, .generalizedTime(secondsSince1970: KerberosASRequest.farFuture)),
            .field(7, .integer(0x1234_5678)),
            .field(8, .sequence([.integer(18), .integer(17)])),
        ])
        let padata: DERNode = .sequence([
            .sequence([.field(1, .integer(1)), .field(2, .octetString(Array(repeating: 0xAB, count: 300)))])
        ])
        return DERNode.application(
            KerberosMessageType.tgsRequest.rawValue,
            .sequence([.field(1, .integer(5)), .field(2, .integer(12)), .field(3, padata), .field(4, body)])
        ).encoded
    }

    /// Parses and rewrites `request`; the answer's bytes, or `nil` when there is none.
    static func answer(_ request: [UInt8], microseconds: Int32 = 250_000) throws -> [UInt8]? {
        var datagram = request + Array(repeating: 0, count: 16)  // a receive buffer is larger than its datagram
        let parsed = try request.withUnsafeBytes { bytes throws(DERError) in try KerberosKDCRequest.parse(bytes) }
        let length = datagram.withUnsafeMutableBytes { buffer in
            KerberosTooBigAnswer.rewrite(
                buffer,
                length: request.count,
                request: parsed,
                seconds: time,
                microseconds: microseconds
            )
        }
        return length.map { Array(datagram[0..<$0]) }
    }

    @Test(
        "an AS-REQ: the answer is the KRB-ERROR the encoder builds, shorter than the request",
        arguments: [0, 127, 128, 32_767, 32_768, 999_999] as [Int32]
    )
    func asRequest(microseconds: Int32) throws {
        let client = KerberosPrincipalName(nameType: 1, components: ["alice"])
        let request = KerberosASRequest(client: client, realm: "EXAMPLE.COM", nonce: 42).encoded
        let parsed = try request.withUnsafeBytes { bytes throws(DERError) in try KerberosKDCRequest.parse(bytes) }
        #expect(parsed.messageType == .asRequest)
        #expect(Array(request[parsed.realm]) == DERNode.generalString("EXAMPLE.COM").encoded)
        let krbtgt = KerberosPrincipalName.ticketGrantingService(realm: "EXAMPLE.COM")
        #expect(Array(request[parsed.server]) == krbtgt.der.encoded)

        let answer = try #require(try Self.answer(request, microseconds: microseconds))
        let expected = KerberosErrorMessage(
            errorCode: KerberosErrorMessage.responseTooBig,
            serverTime: Self.time,
            serverMicroseconds: microseconds,
            realm: "EXAMPLE.COM",
            server: .ticketGrantingService(realm: "EXAMPLE.COM")
        ).encoded
        #expect(answer == expected)
        #expect(answer.count < request.count)
        let reply = try answer.withUnsafeBytes { bytes throws(DERError) in try KerberosReply.decode(bytes) }
        #expect(reply == .error(code: 52))
    }

    @Test("a TGS-REQ with padata and long names (long-form lengths): its realm and server come back unchanged")
    func tgsRequestWithLongNames() throws {
        let realm = String(repeating: "R", count: 200) + ".TEST"
        let server = KerberosPrincipalName(nameType: 3, components: ["host", String(repeating: "h", count: 150)])
        let request = Self.tgsRequest(realm: realm, server: server)
        let parsed = try request.withUnsafeBytes { bytes throws(DERError) in try KerberosKDCRequest.parse(bytes) }
        #expect(parsed.messageType == .tgsRequest)
        let answer = try #require(try Self.answer(request))
        let expected = KerberosErrorMessage(
            errorCode: 52,
            serverTime: Self.time,
            serverMicroseconds: 250_000,
            realm: realm,
            server: server
        ).encoded
        #expect(answer == expected)
    }

    @Test("a realm that is not UTF-8 is answered with the very bytes the client sent")
    func realmBytesAreCopied() throws {
        let realm: [UInt8] = [0xC3, 0x28, 0xFF, 0x41]
        let client = KerberosPrincipalName(nameType: 1, components: ["alice"])
        var request = KerberosASRequest(client: client, realm: "WXYZ", nonce: 7).encoded
        // Both occurrences of the realm (the body's realm and the krbtgt component) take the bytes.
        let original = Array("WXYZ".utf8)
        var index = 0
        while index + 4 <= request.count {
            if Array(request[index..<(index + 4)]) == original {
                request.replaceSubrange(index..<(index + 4), with: realm)
            }
            index += 1
        }
        let answer = try #require(try Self.answer(request))
        var occurrences = 0
        for start in 0...(answer.count - 4) where Array(answer[start..<(start + 4)]) == realm { occurrences += 1 }
        #expect(occurrences == 2)
    }

    @Test("not an AS-REQ or TGS-REQ, or cut anywhere: no request, never a trap")
    func refusals() throws {
        let client = KerberosPrincipalName(nameType: 1, components: ["alice"])
        let request = KerberosASRequest(client: client, realm: "EXAMPLE.COM", nonce: 42).encoded
        for cut in 0..<request.count {
            let prefix = Array(request[0..<cut])
            #expect(throws: DERError.self) {
                try prefix.withUnsafeBytes { bytes throws(DERError) in try KerberosKDCRequest.parse(bytes) }
            }
        }
        let error = KerberosErrorMessage(
            errorCode: 6,
            serverTime: 0,
            realm: "A",
            server: .ticketGrantingService(realm: "A")
        )
        let notRequests: [[UInt8]] = [
            error.encoded,
            request + [0],  // trailing bytes
            Array("hello, not kerberos".utf8),
            [0x6a, 0x80, 0x00, 0x00],  // indefinite length
        ]
        for bytes in notRequests {
            #expect(throws: DERError.self) {
                try bytes.withUnsafeBytes { raw throws(DERError) in try KerberosKDCRequest.parse(raw) }
            }
        }
        // msg-type 12 inside [APPLICATION 10].
        var mismatched = request
        let typeField: [UInt8] = [0xa2, 0x03, 0x02, 0x01, 0x0a]
        let at = try #require((0...(mismatched.count - 5)).first { Array(mismatched[$0..<($0 + 5)]) == typeField })
        mismatched[at + 4] = 0x0c
        #expect(throws: DERError.self) {
            try mismatched.withUnsafeBytes { raw throws(DERError) in try KerberosKDCRequest.parse(raw) }
        }
    }

    @Test("a request without sname is refused; one cut down to its bare fields gets no answer, never a larger one")
    func noAmplification() throws {
        let withoutServer = DERNode.application(
            10,
            .sequence([
                .field(1, .integer(5)), .field(2, .integer(10)),
                .field(4, .sequence([.field(0, .bitString([0, 0, 0, 0])), .field(2, .generalString("R"))])),
            ])
        ).encoded
        #expect(throws: DERError.self) {
            try withoutServer.withUnsafeBytes { raw throws(DERError) in try KerberosKDCRequest.parse(raw) }
        }
        let bare = DERNode.application(
            10,
            .sequence([
                .field(1, .integer(5)), .field(2, .integer(10)),
                .field(
                    4,
                    .sequence([
                        .field(0, .bitString([0, 0, 0, 0])), .field(2, .generalString("R")),
                        .field(3, KerberosPrincipalName(nameType: 2, components: ["k"]).der),
                    ])
                ),
            ])
        ).encoded
        #expect(try Self.answer(bare) == nil, "a \(bare.count)-byte request would get a longer answer")
    }
}
