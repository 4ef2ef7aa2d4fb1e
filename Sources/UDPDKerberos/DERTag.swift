/// The identifier of an ASN.1 element (X.690 8.1.2): its class, whether it is constructed, and its number.
///
/// `Sendable`: a value.
public struct DERTag: Sendable, Hashable, CustomStringConvertible {
    /// The four tag classes of X.690.
    public enum TagClass: UInt8, Sendable, Hashable {
        case universal = 0
        case application = 1
        case contextSpecific = 2
        case `private` = 3
    }

    /// The largest tag number read or written: four base-128 octets. Kerberos uses numbers below 31.
    public static let maxNumber: UInt32 = (1 << 28) - 1

    /// The class.
    public var tagClass: TagClass
    /// Whether the contents are further elements (a SEQUENCE, an explicit tag) rather than bytes.
    public var isConstructed: Bool
    /// The number within the class, at most ``maxNumber``.
    public var number: UInt32

    /// Creates a tag; `number` must be at most ``maxNumber``.
    public init(_ tagClass: TagClass, _ number: UInt32, constructed: Bool) {
        precondition(number <= Self.maxNumber, "DER tag number \(number) over \(Self.maxNumber)")
        self.tagClass = tagClass
        self.number = number
        self.isConstructed = constructed
    }

    /// `INTEGER`.
    public static let integer = DERTag(.universal, 2, constructed: false)
    /// `BIT STRING`.
    public static let bitString = DERTag(.universal, 3, constructed: false)
    /// `OCTET STRING`.
    public static let octetString = DERTag(.universal, 4, constructed: false)
    /// `SEQUENCE` and `SEQUENCE OF`.
    public static let sequence = DERTag(.universal, 16, constructed: true)
    /// `GeneralizedTime` (Kerberos's KerberosTime).
    public static let generalizedTime = DERTag(.universal, 24, constructed: false)
    /// `GeneralString` (Kerberos's KerberosString and Realm).
    public static let generalString = DERTag(.universal, 27, constructed: false)

    /// `[number]`, an explicit context-specific tag (constructed): how Kerberos tags every field.
    public static func context(_ number: UInt32) -> DERTag { DERTag(.contextSpecific, number, constructed: true) }

    /// `[APPLICATION number]`, constructed: how Kerberos tags each message type.
    public static func application(_ number: UInt32) -> DERTag { DERTag(.application, number, constructed: true) }

    /// The number of identifier octets this tag takes.
    var encodedCount: Int {
        guard number >= 31 else { return 1 }
        var count = 1
        var rest = number
        while rest > 0 {
            count += 1
            rest >>= 7
        }
        return count
    }

    /// Appends the identifier octets (the low form below 31, else the minimal high form).
    func encode(into bytes: inout [UInt8]) {
        let leading = tagClass.rawValue << 6 | (isConstructed ? 0x20 : 0)
        guard number >= 31 else {
            bytes.append(leading | UInt8(number))
            return
        }
        bytes.append(leading | 0x1f)
        for shift in stride(from: (encodedCount - 2) * 7, through: 0, by: -7) {
            let group = UInt8(truncatingIfNeeded: number >> UInt32(shift)) & 0x7f
            bytes.append(shift == 0 ? group : group | 0x80)
        }
    }

    /// `[APPLICATION 30]`, `[3]`, `UNIVERSAL 16` and so on, with `(primitive)` or `(constructed)` when unusual.
    public var description: String {
        let name: String
        switch tagClass {
        case .universal: name = "UNIVERSAL \(number)"
        case .application: name = "[APPLICATION \(number)]"
        case .contextSpecific: name = "[\(number)]"
        case .private: name = "[PRIVATE \(number)]"
        }
        let usual = tagClass == .universal ? (number == 16 || number == 17) : true
        return isConstructed == usual ? name : name + (isConstructed ? " (constructed)" : " (primitive)")
    }
}
