/// The Kerberos message types udpd builds or recognises (RFC 4120 section 5.10), which are also the
/// `[APPLICATION n]` tags of the messages.
public enum KerberosMessageType: UInt32, Sendable, Hashable {
    /// KRB_AS_REQ.
    case asRequest = 10
    /// KRB_AS_REP.
    case asReply = 11
    /// KRB_TGS_REQ.
    case tgsRequest = 12
    /// KRB_TGS_REP.
    case tgsReply = 13
    /// KRB_ERROR.
    case error = 30
}

/// A Kerberos `PrincipalName` (RFC 4120 5.2.2): a name type and its components.
///
/// `Sendable`: a value.
public struct KerberosPrincipalName: Sendable, Hashable, CustomStringConvertible {
    /// NT-PRINCIPAL, a user or a host.
    public static let principalType: Int32 = 1
    /// NT-SRV-INST, a service such as `krbtgt/REALM`.
    public static let serviceInstanceType: Int32 = 2

    /// The name type.
    public var nameType: Int32
    /// The components (`["krbtgt", "EXAMPLE.COM"]`).
    public var components: [String]

    /// Creates a principal name.
    public init(nameType: Int32, components: [String]) {
        self.nameType = nameType
        self.components = components
    }

    /// The ticket-granting service of `realm`, `krbtgt/REALM`.
    public static func ticketGrantingService(realm: String) -> KerberosPrincipalName {
        KerberosPrincipalName(nameType: serviceInstanceType, components: ["krbtgt", realm])
    }

    /// `SEQUENCE { name-type [0] Int32, name-string [1] SEQUENCE OF KerberosString }`.
    public var der: DERNode {
        .sequence([
            .field(0, .integer(Int64(nameType))),
            .field(1, .sequence(components.map { .generalString($0) })),
        ])
    }

    /// The components joined by `/`.
    public var description: String { components.joined(separator: "/") }
}

/// The protocol version every Kerberos 5 message carries.
let kerberosProtocolVersion: Int64 = 5

/// An AS-REQ (RFC 4120 5.4.1) without pre-authentication: what `kinit` sends first.
///
/// `Sendable`: a value.
public struct KerberosASRequest: Sendable, Hashable {
    /// The client principal.
    public var client: KerberosPrincipalName
    /// The realm of both the client and the server.
    public var realm: String
    /// The server principal (usually `krbtgt/REALM`).
    public var server: KerberosPrincipalName
    /// The ticket's requested end, seconds since 1970.
    public var till: Int64
    /// The nonce a reply must echo inside its encrypted part.
    public var nonce: UInt32
    /// The encryption types the client accepts, in order of preference.
    public var encryptionTypes: [Int32]

    /// aes256-cts-hmac-sha1-96, aes128-cts-hmac-sha1-96, aes256-cts-hmac-sha384-192, aes128-cts-hmac-sha256-128
    /// and rc4-hmac: what current MIT and Heimdal clients offer.
    public static let commonEncryptionTypes: [Int32] = [18, 17, 20, 19, 23]

    /// 2037-09-13 02:48:05 UTC, the "no expiry" time Heimdal's and MIT's clients send for `till`.
    public static let farFuture: Int64 = 2_136_422_885

    /// Creates an AS-REQ for `client`'s ticket-granting ticket in `realm`.
    public init(
        client: KerberosPrincipalName,
        realm: String,
        nonce: UInt32,
        server: KerberosPrincipalName? = nil,
        till: Int64 = farFuture,
        encryptionTypes: [Int32] = commonEncryptionTypes
    ) {
        self.client = client
        self.realm = realm
        self.nonce = nonce
        self.server = server ?? .ticketGrantingService(realm: realm)
        self.till = till
        self.encryptionTypes = encryptionTypes
    }

    /// `[APPLICATION 10] KDC-REQ`.
    public var der: DERNode {
        let body: DERNode = .sequence([
            .field(0, .bitString([0, 0, 0, 0])),  // kdc-options: none
            .field(1, client.der),
            .field(2, .generalString(realm)),
            .field(3, server.der),
            .field(5, .generalizedTime(secondsSince1970: till)),
            .field(7, .integer(Int64(nonce))),
            .field(8, .sequence(encryptionTypes.map { .integer(Int64($0)) })),
        ])
        return .application(
            KerberosMessageType.asRequest.rawValue,
            .sequence([
                .field(1, .integer(kerberosProtocolVersion)),
                .field(2, .integer(Int64(KerberosMessageType.asRequest.rawValue))),
                .field(4, body),
            ])
        )
    }

    /// The DER bytes.
    public var encoded: [UInt8] { der.encoded }
}
