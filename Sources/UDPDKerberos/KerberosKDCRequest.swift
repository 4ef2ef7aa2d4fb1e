/// What udpd reads of an AS-REQ or TGS-REQ (RFC 4120 5.4.1) arriving over UDP: its type, and where in the datagram
/// its realm and server principal are, so that an answer can name them byte for byte.
///
/// Parsing is bounded and allocates nothing: a walk of the whole datagram with a ``DERReader`` (every length checked
/// against what encloses it, down to its depth limit), then the message's shape up to `sname`, whose realm and
/// principal name are checked in full; the rest of the body (times, nonce, encryption types) is well-formed DER but
/// not read, since udpd never acts on it.
///
/// `Sendable`: a value.
public struct KerberosKDCRequest: Sendable, Hashable {
    /// ``KerberosMessageType/asRequest`` or ``KerberosMessageType/tgsRequest``.
    public var messageType: KerberosMessageType
    /// The request body's `realm`: the whole GeneralString element (identifier, length, contents) in the datagram.
    public var realm: Range<Int>
    /// The request body's `sname`: the whole PrincipalName SEQUENCE in the datagram.
    public var server: Range<Int>
    /// The body's `realm [2]` and `sname [3]` fields, which follow each other: from the identifier of the first to
    /// the end of the second.
    public var realmAndServerFields: Range<Int>

    /// Reads `bytes` as one AS-REQ or TGS-REQ: `[APPLICATION 10 or 12] SEQUENCE { pvno [1] 5, msg-type [2] matching
    /// the tag, padata [3] OPTIONAL, req-body [4] SEQUENCE { kdc-options [0], cname [1] OPTIONAL, realm [2]
    /// GeneralString, sname [3] PrincipalName, ... } }`, with nothing after it. A request without `sname` (allowed by
    /// RFC 4120 only for user-to-user TGS requests) is refused, since an answer must name its server.
    public static func parse(
        _ bytes: UnsafeRawBufferPointer,
        limits: DERReader.Limits = .kerberos
    ) throws(DERError) -> KerberosKDCRequest {
        // The whole datagram must be well-formed DER, the parts copied into an answer included.
        var whole = try DERReader(bytes, limits: limits)
        _ = try whole.skipAll()
        var top = try DERReader(bytes, limits: limits)
        guard let message = try top.next() else { throw DERError(.truncated, at: 0) }
        try top.expectEnd()
        let type: KerberosMessageType
        switch message.tag {
        case .application(KerberosMessageType.asRequest.rawValue): type = .asRequest
        case .application(KerberosMessageType.tgsRequest.rawValue): type = .tgsRequest
        default:
            throw DERError(
                .unexpectedTag(expected: .application(KerberosMessageType.asRequest.rawValue), found: message.tag),
                at: message.start
            )
        }
        var outer = try top.children(of: message)
        let sequence = try outer.read(.sequence)
        try outer.expectEnd()
        var fields = try outer.children(of: sequence)
        // KDC-REQ numbers its fields from 1: pvno [1], msg-type [2].
        let version = try fields.readIntegerField(1)
        guard version == kerberosProtocolVersion else {
            throw DERError(.unexpectedValue("pvno \(version), not 5"), at: message.start)
        }
        let messageType = try fields.readIntegerField(2)
        guard messageType == Int64(type.rawValue) else {
            throw DERError(.unexpectedValue("msg-type \(messageType) in \(message.tag)"), at: message.start)
        }
        _ = try fields.readIfPresent(.context(3))
        var bodyField = try fields.readField(4)
        let body = try bodyField.read(.sequence)
        try bodyField.expectEnd()
        var bodyFields = try bodyField.children(of: body)
        _ = try bodyFields.read(.context(0))
        _ = try bodyFields.readIfPresent(.context(1))
        let realmField = try bodyFields.read(.context(2))
        var realmReader = try bodyFields.children(of: realmField)
        let realm = try realmReader.read(.generalString)
        try realmReader.expectEnd()
        var serverReader = try bodyFields.readField(3)
        let server = try serverReader.read(.sequence)
        try serverReader.expectEnd()
        try checkPrincipalName(server, in: serverReader)
        return KerberosKDCRequest(
            messageType: type,
            realm: realm.start..<realm.contents.upperBound,
            server: server.start..<server.contents.upperBound,
            realmAndServerFields: realmField.start..<server.contents.upperBound
        )
    }

    /// Checks that `element` is a PrincipalName: `SEQUENCE { name-type [0] INTEGER, name-string [1] SEQUENCE OF
    /// GeneralString }`, nothing more, so that an answer naming it holds nothing a client cannot read.
    private static func checkPrincipalName(_ element: DERElement, in reader: DERReader) throws(DERError) {
        var fields = try reader.children(of: element)
        _ = try fields.readIntegerField(0)
        var names = try fields.readField(1)
        let list = try names.read(.sequence)
        try names.expectEnd()
        try fields.expectEnd()
        var components = try names.children(of: list)
        while !components.isAtEnd { _ = try components.read(.generalString) }
    }
}
