import UDPDKerberos

/// One probe's datagram and the test an answer must pass to count as good.
///
/// `Sendable`: a value.
struct UpstreamProbeRequest: Sendable {
    /// What the probe sends.
    let datagram: [UInt8]
    /// What the probe is.
    let probe: UpstreamProbe
    /// The ID of a DNS query (0 for krb5).
    let queryID: UInt16

    /// The longest answer looked at: a UDP datagram's payload.
    static let maxAnswer = 65_535

    /// Whether `answer` is good: for krb5 a KRB-ERROR or AS-REP that decodes, for dns a response (QR set) with the
    /// query's ID. Throws what is wrong otherwise, for the debug log.
    func check(_ answer: UnsafeRawBufferPointer) throws(UpstreamProbeAnswerError) {
        switch probe {
        case .krb5:
            do {
                _ = try KerberosReply.decode(answer, limits: DERReader.Limits(maxDepth: 16, maxLength: Self.maxAnswer))
            } catch {
                throw UpstreamProbeAnswerError(reason: "not a KRB-ERROR or AS-REP (\(error))")
            }
        case .dns:
            guard answer.count >= 12 else {
                throw UpstreamProbeAnswerError(reason: "\(answer.count) bytes, shorter than a DNS header")
            }
            let id = UInt16(answer[0]) << 8 | UInt16(answer[1])
            guard id == queryID else { throw UpstreamProbeAnswerError(reason: "DNS ID \(id), not \(queryID)") }
            guard answer[2] & 0x80 != 0 else { throw UpstreamProbeAnswerError(reason: "a DNS query, not a response") }
        }
    }
}

/// Why an answer to a probe did not count.
struct UpstreamProbeAnswerError: Error, Sendable, CustomStringConvertible {
    /// What was wrong with it.
    var reason: String
    var description: String { reason }
}

extension UpstreamProbe {
    /// The prefix of the client principal of a krb5 probe; 16 random hex digits follow, so that it cannot exist.
    public static let krb5PrincipalPrefix = "udpd-health-probe-"

    /// A fresh request: a krb5 AS-REQ for `udpd-health-probe-<random>@realm` with a random nonce, or a DNS query
    /// for `. NS` (recursion not desired) with a random ID.
    func makeRequest(realm: String, using random: inout some RandomNumberGenerator) -> UpstreamProbeRequest {
        switch self {
        case .krb5:
            let suffix = String(random.next() as UInt64, radix: 16)
            let name = Self.krb5PrincipalPrefix + String(repeating: "0", count: 16 - suffix.count) + suffix
            let request = KerberosASRequest(
                client: KerberosPrincipalName(nameType: KerberosPrincipalName.principalType, components: [name]),
                realm: realm,
                // A nonce below 2^31: some KDCs decode it as a signed 32-bit integer.
                nonce: UInt32.random(in: 0...UInt32(Int32.max), using: &random)
            )
            return UpstreamProbeRequest(datagram: request.encoded, probe: self, queryID: 0)
        case .dns:
            let id = random.next() as UInt16
            // Header: ID, flags 0 (a standard query, RD clear), one question; then the root name, QTYPE NS, IN.
            let datagram: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1]
            return UpstreamProbeRequest(datagram: datagram, probe: self, queryID: id)
        }
    }
}
