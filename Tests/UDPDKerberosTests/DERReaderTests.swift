import Testing
import UDPDKerberos

@Suite("DER reader: trusts no length, accepts only DER, bounded in depth and length")
struct DERReaderTests {
    static let request = KerberosASRequest(
        client: KerberosPrincipalName(nameType: 1, components: ["udpd-health-probe-0123456789abcdef"]),
        realm: "EXAMPLE.COM",
        nonce: 0xdead_beef
    )

    func parse(_ bytes: [UInt8], limits: DERReader.Limits = .kerberos) -> Result<DERNode, DERError> {
        bytes.withUnsafeBytes { raw in Result { () throws(DERError) in try DERNode.parse(raw, limits: limits) } }
    }

    func failure(_ bytes: [UInt8], limits: DERReader.Limits = .kerberos) -> DERError.Code? {
        guard case .failure(let error) = parse(bytes, limits: limits) else { return nil }
        return error.code
    }

    @Test("what the encoder writes reads back as the same tree")
    func roundTrip() throws {
        let error = KerberosErrorMessage(
            errorCode: 6,
            serverTime: 0,
            realm: "R",
            server: .ticketGrantingService(realm: "R"),
            clientRealm: "R",
            client: KerberosPrincipalName(nameType: 1, components: ["x"])
        )
        for node in [Self.request.der, error.der, .octetString(Array(repeating: 1, count: 70_000))] {
            #expect(try parse(node.encoded).get() == node)
        }
    }

    @Test("every truncation of an AS-REQ is rejected as truncated")
    func truncated() {
        let bytes = Self.request.encoded
        for count in 0..<bytes.count {
            #expect(failure(Array(bytes.prefix(count))) == .truncated, "prefix of \(count) bytes")
        }
    }

    @Test("a length longer than the bytes, the limit, or four octets is rejected")
    func overlong() {
        #expect(failure([0x04, 0x05, 1, 2, 3]) == .truncated)
        #expect(failure([0x30, 0x03, 0x04, 0x05, 0x00]) == .truncated)  // the child claims more than its parent
        #expect(failure([0x04, 0x84, 0x7f, 0xff, 0xff, 0xff]) == .lengthOverLimit(limit: 1 << 20))
        #expect(failure([0x04, 0x85, 0x01, 0, 0, 0, 0]) == .lengthOverLimit(limit: 1 << 20))
        let small = DERReader.Limits(maxDepth: 4, maxLength: 300)
        #expect(failure([0x04, 0x82, 0x01, 0x40, 0, 0], limits: small) == .lengthOverLimit(limit: 300))
        #expect(failure(Array(repeating: 0, count: 301), limits: small) == .lengthOverLimit(limit: 300))
    }

    @Test("BER forms are not DER: indefinite and non-minimal lengths, non-minimal tags")
    func notDER() {
        #expect(failure([0x30, 0x80, 0x00, 0x00]) == .indefiniteLength)
        #expect(failure([0x04, 0x81, 0x01, 0x00]) == .nonMinimalEncoding)
        #expect(failure([0x04, 0x82, 0x00, 0x81] + Array(repeating: 0, count: 0x81)) == .nonMinimalEncoding)
        #expect(failure([0x5f, 0x80, 0x1f, 0x00]) == .nonMinimalEncoding)  // a leading 0x80 in a tag number
        #expect(failure([0x5f, 0x1e, 0x00]) == .nonMinimalEncoding)  // a high-form number below 31
        #expect(failure([0x5f, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00]) == .tagNumberOverLimit)
        #expect(failure([0x04, 0x00, 0x00]) == .trailingBytes)
    }

    @Test("nesting deeper than the limit is rejected, however short")
    func deep() {
        var bytes: [UInt8] = [0x05, 0x00]
        for _ in 0..<40 { bytes = [0x30, UInt8(bytes.count)] + bytes }
        #expect(failure(Array(bytes.suffix(2 + 2 * 15))) == nil)  // 16 levels: the limit
        #expect(failure(Array(bytes.suffix(2 + 2 * 16))) == .tooDeep(limit: 16))
        #expect(failure(bytes) == .tooDeep(limit: 16))
        #expect(failure(Array(bytes.suffix(8)), limits: .init(maxDepth: 3, maxLength: 100)) == .tooDeep(limit: 3))
    }

    @Test("INTEGERs: empty, padded or wider than 64 bits are rejected")
    func integers() {
        for bad: [UInt8] in [
            [0x02, 0x00], [0x02, 0x02, 0x00, 0x01], [0x02, 0x02, 0xff, 0x80],
            [0x02, 0x09] + Array(repeating: 1, count: 9),
        ] {
            let code = bad.withUnsafeBytes { raw -> DERError.Code? in
                do throws(DERError) {
                    var reader = try DERReader(raw)
                    _ = try reader.integer(reader.read(.integer))
                    return nil
                } catch {
                    return error.code
                }
            }
            #expect(code == .invalidInteger, "\(bad)")
        }
    }

    @Test("KRB-ERROR and AS-REP are told from anything else")
    func replies() {
        func decode(_ bytes: [UInt8]) -> KerberosReply? {
            bytes.withUnsafeBytes { try? KerberosReply.decode($0) }
        }
        let asReply = DERNode.application(11, .sequence([.field(0, .integer(5)), .field(1, .integer(11))])).encoded
        #expect(decode(asReply) == .asReply)
        #expect(decode(Self.request.encoded) == nil)  // an AS-REQ is no answer
        let wrongType = DERNode.application(30, .sequence([.field(0, .integer(5)), .field(1, .integer(11))])).encoded
        #expect(decode(wrongType) == nil)
        let wrongVersion = DERNode.application(11, .sequence([.field(0, .integer(4)), .field(1, .integer(11))])).encoded
        #expect(decode(wrongVersion) == nil)
        #expect(decode(Array("not kerberos at all".utf8)) == nil)
        #expect(decode([]) == nil)
        #expect(decode(asReply + [0]) == nil)
    }
}
