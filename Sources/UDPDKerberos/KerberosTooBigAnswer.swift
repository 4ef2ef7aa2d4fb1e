/// The answer udpd gives, in place of a KDC, to a Kerberos request over UDP that it will not forward: a KRB-ERROR
/// `KRB_ERR_RESPONSE_TOO_BIG` (52), which tells MIT and Heimdal clients to send the same request again over TCP.
///
/// The answer is written over the request, in the datagram's own buffer, and allocates nothing:
/// `[APPLICATION 30] SEQUENCE { pvno [0] 5, msg-type [1] 30, stime [4], susec [5], error-code [6] 52, realm [9],
/// sname [10] }`, whose realm and server principal are the request's own bytes (so the client reads back exactly the
/// names it sent, whatever their encoding). It is never longer than the request: when it would be (a request cut
/// down to its bare fields), there is no answer, so that it can never amplify a forged request.
public enum KerberosTooBigAnswer {
    /// Rewrites `datagram[0..<length]`, whose request `request` describes, into the answer; returns the answer's
    /// length, or `nil` (and leaves the datagram alone) when the answer would be longer than the request or the time
    /// cannot be written as a four-digit year. `seconds` and `microseconds` are the time the answer gives as `stime`
    /// and `susec`.
    public static func rewrite(
        _ datagram: UnsafeMutableRawBufferPointer,
        length: Int,
        request: KerberosKDCRequest,
        seconds: Int64,
        microseconds: Int32
    ) -> Int? {
        let names = request.realmAndServerFields
        guard length <= datagram.count, names.lowerBound >= 0, names.upperBound <= length else { return nil }
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let date = DERNode.civilDate(daysSince1970: days)
        guard (0...9999).contains(date.year) else { return nil }
        let susec = Int64(max(0, min(999_999, microseconds)))
        let susecCount = susec < 0x80 ? 1 : susec < 0x8000 ? 2 : 3
        // pvno, msg-type, stime, susec, error-code, then the request's realm and sname fields with new tags.
        let fixedCount = 5 + 5 + 19 + (4 + susecCount) + 5
        let sequenceContents = fixedCount + names.count
        let sequenceCount = 1 + DERNode.lengthCount(sequenceContents) + sequenceContents
        let total = 1 + DERNode.lengthCount(sequenceCount) + sequenceCount
        guard total <= length else { return nil }

        // The names first, to the end of the answer (they lie later in the request, and may overlap their new place).
        let base = datagram.baseAddress!
        let namesStart = total - names.count
        (base + namesStart).copyMemory(from: base + names.lowerBound, byteCount: names.count)
        // Their field tags change from the request body's [2] and [3] to the error's [9] and [10].
        base.storeBytes(of: 0xA9, toByteOffset: namesStart, as: UInt8.self)
        base.storeBytes(
            of: 0xAA,
            toByteOffset: namesStart + request.server.lowerBound - names.lowerBound
                - 1 - DERNode.lengthCount(request.server.count),
            as: UInt8.self
        )

        var writer = Writer(base: base)
        writer.byte(0x7E)  // [APPLICATION 30], constructed
        writer.length(sequenceCount)
        writer.byte(0x30)
        writer.length(sequenceContents)
        writer.smallIntegerField(0, UInt8(kerberosProtocolVersion))
        writer.smallIntegerField(1, UInt8(KerberosMessageType.error.rawValue))
        writer.header(field: 4, contents: 17)
        writer.header(tag: 0x18, contents: 15)  // GeneralizedTime, YYYYMMDDHHMMSSZ
        let secondOfDay = seconds - days * 86_400
        writer.digits(date.year, 4)
        writer.digits(date.month, 2)
        writer.digits(date.day, 2)
        writer.digits(secondOfDay / 3600, 2)
        writer.digits(secondOfDay / 60 % 60, 2)
        writer.digits(secondOfDay % 60, 2)
        writer.byte(UInt8(ascii: "Z"))
        writer.header(field: 5, contents: 2 + susecCount)
        writer.header(tag: 0x02, contents: susecCount)
        writer.bigEndian(Int(susec), count: susecCount)
        writer.smallIntegerField(6, UInt8(KerberosErrorMessage.responseTooBig))
        precondition(writer.offset == namesStart, "the answer's fixed fields miscounted")
        return total
    }

    /// Writes bytes forward from the start of the datagram.
    private struct Writer {
        let base: UnsafeMutableRawPointer
        var offset = 0

        mutating func byte(_ value: UInt8) {
            base.storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
            offset += 1
        }

        /// The low `count` bytes of `value`, most significant first.
        mutating func bigEndian(_ value: Int, count: Int) {
            for index in stride(from: count - 1, through: 0, by: -1) {
                byte(UInt8(truncatingIfNeeded: value >> (8 * index)))
            }
        }

        /// A DER definite length in its shortest form.
        mutating func length(_ value: Int) {
            let count = DERNode.lengthCount(value)
            guard count > 1 else { return byte(UInt8(value)) }
            byte(0x80 | UInt8(count - 1))
            bigEndian(value, count: count - 1)
        }

        /// A one-byte identifier and the length of `contents` bytes (all below 128 here).
        mutating func header(tag: UInt8, contents: Int) {
            byte(tag)
            byte(UInt8(contents))
        }

        /// The identifier and length of `[number] EXPLICIT`, constructed, around `contents` bytes.
        mutating func header(field number: UInt8, contents: Int) {
            header(tag: 0xA0 | number, contents: contents)
        }

        /// `[number] EXPLICIT INTEGER value`, for a value below 128.
        mutating func smallIntegerField(_ number: UInt8, _ value: UInt8) {
            header(field: number, contents: 3)
            header(tag: 0x02, contents: 1)
            byte(value)
        }

        /// `value` in decimal, `width` digits with leading zeros.
        mutating func digits(_ value: Int64, _ width: Int) {
            var divisor: Int64 = 1
            for _ in 1..<width { divisor *= 10 }
            while divisor > 0 {
                byte(UInt8(ascii: "0") + UInt8(value / divisor % 10))
                divisor /= 10
            }
        }
    }
}
