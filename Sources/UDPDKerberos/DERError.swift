/// Why bytes are not the DER a reader expected, and where (the offset in the bytes it was given).
///
/// `Sendable`: a value.
public struct DERError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong.
    public enum Code: Sendable, Hashable {
        /// The bytes end inside an identifier, a length, or the contents a length promised.
        case truncated
        /// The indefinite length form (0x80): BER only, never DER.
        case indefiniteLength
        /// A length or tag number not in its shortest form.
        case nonMinimalEncoding
        /// A length over the reader's limit, or over the bytes a length field can say (more than 4 octets).
        case lengthOverLimit(limit: Int)
        /// A tag number over ``DERTag/maxNumber``.
        case tagNumberOverLimit
        /// Elements nested deeper than the reader's limit.
        case tooDeep(limit: Int)
        /// An element with another tag (`nil`: no element at all) where `expected` was required.
        case unexpectedTag(expected: DERTag, found: DERTag?)
        /// Children asked of a primitive element.
        case notConstructed(DERTag)
        /// An INTEGER that is empty, not minimal, or does not fit 64 bits.
        case invalidInteger
        /// A value that decodes but is not the one the message requires (a Kerberos `pvno` other than 5 ...).
        case unexpectedValue(String)
        /// Bytes left after the last element.
        case trailingBytes
    }

    /// What was wrong.
    public var code: Code
    /// The offset, in the bytes the reader was given, of the element or octet at fault.
    public var offset: Int

    /// Creates an error.
    public init(_ code: Code, at offset: Int) {
        self.code = code
        self.offset = offset
    }

    /// The fault and its offset, for logs.
    public var description: String {
        let what: String
        switch code {
        case .truncated: what = "truncated"
        case .indefiniteLength: what = "indefinite length (BER, not DER)"
        case .nonMinimalEncoding: what = "length or tag not in its shortest form"
        case .lengthOverLimit(let limit): what = "length over the limit of \(limit) bytes"
        case .tagNumberOverLimit: what = "tag number over \(DERTag.maxNumber)"
        case .tooDeep(let limit): what = "nested deeper than \(limit) levels"
        case .unexpectedTag(let expected, let found):
            what = "expected \(expected), found \(found.map { "\($0)" } ?? "nothing")"
        case .notConstructed(let tag): what = "\(tag) is primitive, not constructed"
        case .invalidInteger: what = "invalid INTEGER"
        case .unexpectedValue(let detail): what = detail
        case .trailingBytes: what = "bytes after the last element"
        }
        return "DER: \(what) at offset \(offset)"
    }
}
