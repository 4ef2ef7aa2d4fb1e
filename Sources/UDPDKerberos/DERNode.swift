/// An ASN.1 element as a value tree, encoded in DER (X.690 section 10): definite lengths in their shortest form,
/// the low tag form below 31. Kerberos messages are built from these (RFC 4120 section 5).
///
/// `Sendable`: a value.
public indirect enum DERNode: Sendable, Hashable {
    /// An element whose contents are bytes (INTEGER, OCTET STRING, GeneralString ...).
    case primitive(DERTag, [UInt8])
    /// An element whose contents are further elements (SEQUENCE, an explicit tag ...).
    case constructed(DERTag, [DERNode])

    /// The element's tag.
    public var tag: DERTag {
        switch self {
        case .primitive(let tag, _), .constructed(let tag, _): tag
        }
    }

    /// The element's DER encoding.
    public var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encodedCount)
        encode(into: &bytes)
        return bytes
    }

    /// Appends the element's DER encoding to `bytes`.
    public func encode(into bytes: inout [UInt8]) {
        tag.encode(into: &bytes)
        Self.encodeLength(contentsCount, into: &bytes)
        switch self {
        case .primitive(_, let contents):
            bytes.append(contentsOf: contents)
        case .constructed(_, let children):
            for child in children { child.encode(into: &bytes) }
        }
    }

    /// The number of bytes of the whole encoding.
    public var encodedCount: Int {
        let contents = contentsCount
        return tag.encodedCount + Self.lengthCount(contents) + contents
    }

    private var contentsCount: Int {
        switch self {
        case .primitive(_, let contents): contents.count
        case .constructed(_, let children): children.reduce(0) { $0 + $1.encodedCount }
        }
    }

    /// The octets a definite length takes: one below 128, else one plus the length's own bytes.
    static func lengthCount(_ length: Int) -> Int {
        guard length >= 0x80 else { return 1 }
        return 1 + (Int.bitWidth - length.leadingZeroBitCount + 7) / 8
    }

    static func encodeLength(_ length: Int, into bytes: inout [UInt8]) {
        guard length >= 0x80 else {
            bytes.append(UInt8(length))
            return
        }
        let count = lengthCount(length) - 1
        bytes.append(0x80 | UInt8(count))
        for index in stride(from: count - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: length >> (index * 8)))
        }
    }
}

// MARK: - Universal types

extension DERNode {
    /// An `INTEGER` in the fewest two's-complement bytes.
    public static func integer(_ value: Int64) -> DERNode {
        var bytes: [UInt8] = []
        for shift in stride(from: 56, through: 0, by: -8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> Int64(shift)))
        }
        // Drop leading bytes that only repeat the sign of the next one.
        while bytes.count > 1,
            (bytes[0] == 0x00 && bytes[1] & 0x80 == 0) || (bytes[0] == 0xff && bytes[1] & 0x80 != 0)
        {
            bytes.removeFirst()
        }
        return .primitive(.integer, bytes)
    }

    /// A `GeneralString` of `text`'s UTF-8 bytes (Kerberos's KerberosString and Realm are IA5 in practice).
    public static func generalString(_ text: String) -> DERNode {
        .primitive(.generalString, Array(text.utf8))
    }

    /// An `OCTET STRING`.
    public static func octetString(_ bytes: [UInt8]) -> DERNode {
        .primitive(.octetString, bytes)
    }

    /// A `BIT STRING` whose bits are `bytes`, all used (Kerberos's flags, always 32 bits).
    public static func bitString(_ bytes: [UInt8]) -> DERNode {
        .primitive(.bitString, [0] + bytes)
    }

    /// A `GeneralizedTime` in Kerberos's form, `YYYYMMDDHHMMSSZ` (UTC, no fraction), from seconds since 1970.
    public static func generalizedTime(secondsSince1970 seconds: Int64) -> DERNode {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civilDate(daysSince1970: days)
        let text =
            pad(year, 4) + pad(month, 2) + pad(day, 2) + pad(secondOfDay / 3600, 2) + pad(secondOfDay / 60 % 60, 2)
            + pad(secondOfDay % 60, 2) + "Z"
        return .primitive(.generalizedTime, Array(text.utf8))
    }

    /// A `SEQUENCE` (or `SEQUENCE OF`).
    public static func sequence(_ children: [DERNode]) -> DERNode {
        .constructed(.sequence, children)
    }

    /// `[number] EXPLICIT inner`: a Kerberos field.
    public static func field(_ number: UInt32, _ inner: DERNode) -> DERNode {
        .constructed(.context(number), [inner])
    }

    /// `[APPLICATION number] EXPLICIT inner`: a Kerberos message or Ticket.
    public static func application(_ number: UInt32, _ inner: DERNode) -> DERNode {
        .constructed(.application(number), [inner])
    }

    /// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard Hinnant's `civil_from_days`).
    static func civilDate(daysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    private static func pad(_ value: Int64, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
