/// A KRB-ERROR (RFC 4120 5.9.1): the fields udpd reads or writes.
///
/// `Sendable`: a value.
public struct KerberosErrorMessage: Sendable, Hashable {
    /// KDC_ERR_WRONG_REALM.
    public static let wrongRealm: Int32 = 68
    /// KDC_ERR_C_PRINCIPAL_UNKNOWN.
    public static let clientPrincipalUnknown: Int32 = 6
    /// KRB_ERR_RESPONSE_TOO_BIG: the client should retry over TCP.
    public static let responseTooBig: Int32 = 52

    /// The error code.
    public var errorCode: Int32
    /// The server's time, seconds since 1970.
    public var serverTime: Int64
    /// The microseconds of ``serverTime``.
    public var serverMicroseconds: Int32
    /// The realm of the server principal.
    public var realm: String
    /// The server principal the request named.
    public var server: KerberosPrincipalName
    /// The client's realm, when known.
    public var clientRealm: String?
    /// The client principal, when known.
    public var client: KerberosPrincipalName?
    /// Text for a human.
    public var text: String?

    /// Creates an error message.
    public init(
        errorCode: Int32,
        serverTime: Int64,
        serverMicroseconds: Int32 = 0,
        realm: String,
        server: KerberosPrincipalName,
        clientRealm: String? = nil,
        client: KerberosPrincipalName? = nil,
        text: String? = nil
    ) {
        self.errorCode = errorCode
        self.serverTime = serverTime
        self.serverMicroseconds = serverMicroseconds
        self.realm = realm
        self.server = server
        self.clientRealm = clientRealm
        self.client = client
        self.text = text
    }

    /// `[APPLICATION 30] SEQUENCE { ... }`.
    public var der: DERNode {
        var fields: [DERNode] = [
            .field(0, .integer(kerberosProtocolVersion)),
            .field(1, .integer(Int64(KerberosMessageType.error.rawValue))),
            .field(4, .generalizedTime(secondsSince1970: serverTime)),
            .field(5, .integer(Int64(serverMicroseconds))),
            .field(6, .integer(Int64(errorCode))),
        ]
        if let clientRealm { fields.append(.field(7, .generalString(clientRealm))) }
        if let client { fields.append(.field(8, client.der)) }
        fields.append(.field(9, .generalString(realm)))
        fields.append(.field(10, server.der))
        if let text { fields.append(.field(11, .generalString(text))) }
        return .application(KerberosMessageType.error.rawValue, .sequence(fields))
    }

    /// The DER bytes.
    public var encoded: [UInt8] { der.encoded }
}

/// What a KDC answered, as far as a health check needs to know: that the bytes are a well-formed Kerberos reply.
///
/// `Sendable`: a value.
public enum KerberosReply: Sendable, Hashable {
    /// A KRB-ERROR with this error code.
    case error(code: Int64)
    /// An AS-REP.
    case asReply

    /// Decodes `bytes` as one KRB-ERROR or AS-REP: the whole message must be well-formed DER within `limits`, its
    /// outer tag `[APPLICATION 30]` or `[APPLICATION 11]` around a SEQUENCE whose `pvno` is 5 and whose `msg-type`
    /// matches the tag (and, for an error, with an `error-code`). Throws otherwise.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer,
        limits: DERReader.Limits = .kerberos
    )
        throws(DERError) -> KerberosReply
    {
        var whole = try DERReader(bytes, limits: limits)
        _ = try whole.skipAll()
        var top = try DERReader(bytes, limits: limits)
        guard let message = try top.next() else { throw DERError(.truncated, at: 0) }
        try top.expectEnd()
        let type: KerberosMessageType
        switch message.tag {
        case .application(KerberosMessageType.error.rawValue): type = .error
        case .application(KerberosMessageType.asReply.rawValue): type = .asReply
        default:
            throw DERError(
                .unexpectedTag(expected: .application(KerberosMessageType.error.rawValue), found: message.tag),
                at: message.start
            )
        }
        var outer = try top.children(of: message)
        let sequence = try outer.read(.sequence)
        try outer.expectEnd()
        var fields = try outer.children(of: sequence)
        // KRB-ERROR numbers its fields from 0, KDC-REP from 0 too: pvno [0], msg-type [1].
        let version = try fields.readIntegerField(0)
        guard version == kerberosProtocolVersion else {
            throw DERError(.unexpectedValue("pvno \(version), not 5"), at: message.start)
        }
        let messageType = try fields.readIntegerField(1)
        guard messageType == Int64(type.rawValue) else {
            throw DERError(.unexpectedValue("msg-type \(messageType) in \(message.tag)"), at: message.start)
        }
        guard type == .error else { return .asReply }
        for optional: UInt32 in 2...5 { _ = try fields.readIfPresent(.context(optional)) }
        return .error(code: try fields.readIntegerField(6))
    }
}
