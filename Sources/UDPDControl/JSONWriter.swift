/// A minimal JSON writer for the daemon's answers: objects, arrays, strings, integers, doubles, booleans, null.
///
/// Status with a thousand services is about 400 KB of JSON; Foundation's `JSONEncoder` spends tens of milliseconds on
/// it, while writing bytes directly takes a couple. The reader's side keeps `Codable`, so what this writes is checked
/// against the `Decodable` conformances in the tests. Keys are written in sorted order, as `encodeLine` does.
struct JSONWriter {
    private(set) var bytes: [UInt8] = []
    /// Whether the next value or key follows another in the same container and so needs a comma. One flag is
    /// enough for any nesting: a container starts without one, and a container that ends is a value of its parent.
    private var needsComma = false

    init(reservingCapacity capacity: Int = 4096) {
        bytes.reserveCapacity(capacity)
    }

    mutating func beginObject() {
        separate()
        bytes.append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func endObject() {
        bytes.append(UInt8(ascii: "}"))
        markValue()
    }

    mutating func beginArray() {
        separate()
        bytes.append(UInt8(ascii: "["))
        needsComma = false
    }

    mutating func endArray() {
        bytes.append(UInt8(ascii: "]"))
        markValue()
    }

    /// Writes `"name":`; the value follows.
    mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
        needsComma = false
    }

    /// Writes `"name":` for a key that is data (a drop reason).
    mutating func key(_ name: String) {
        string(name)
        bytes.append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func string(_ value: String) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        let utf8 = value.utf8
        // Almost every string (names, addresses, reasons) needs no escaping: one scan, then one copy.
        let copied = utf8.withContiguousStorageIfAvailable { buffer -> Bool in
            for byte in buffer where Self.needsEscaping(byte) { return false }
            bytes.append(contentsOf: buffer)
            return true
        }
        switch copied {
        case true?:
            break
        case false?:
            appendEscaped(utf8)
        case nil:
            if utf8.contains(where: Self.needsEscaping) { appendEscaped(utf8) } else { bytes.append(contentsOf: utf8) }
        }
        bytes.append(UInt8(ascii: "\""))
        markValue()
    }

    private static func needsEscaping(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    private mutating func appendEscaped(_ utf8: String.UTF8View) {
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0..<0x20:
                let hex: StaticString = "0123456789abcdef"
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                hex.withUTF8Buffer {
                    bytes.append($0[Int(byte >> 4)])
                    bytes.append($0[Int(byte & 0xf)])
                }
            default:
                bytes.append(byte)
            }
        }
    }

    mutating func integer<Value: BinaryInteger>(_ value: Value) {
        separate()
        if value < 0 {
            bytes.append(UInt8(ascii: "-"))
            appendDigits(UInt64(value.magnitude))
        } else {
            appendDigits(UInt64(value))
        }
        markValue()
    }

    /// Writes the decimal digits of `value` without building a String.
    private mutating func appendDigits(_ value: UInt64) {
        guard value > 0 else {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 20 digits, most significant last
        var count = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            while rest > 0 {
                buffer[count] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                count += 1
            }
            for index in stride(from: count - 1, through: 0, by: -1) { bytes.append(buffer[index]) }
        }
    }

    mutating func double(_ value: Double) {
        separate()
        bytes.append(contentsOf: (value.isFinite ? String(value) : "0").utf8)
        markValue()
    }

    mutating func bool(_ value: Bool) {
        separate()
        bytes.append(contentsOf: (value ? "true" : "false").utf8)
        markValue()
    }

    mutating func null() {
        separate()
        bytes.append(contentsOf: "null".utf8)
        markValue()
    }

    /// Ends the line (a complete answer), in place: appending to a copy of ``bytes`` copied the whole answer.
    mutating func newline() {
        bytes.append(UInt8(ascii: "\n"))
    }

    mutating func strings(_ values: [String]) {
        beginArray()
        for value in values { string(value) }
        endArray()
    }

    /// Puts a comma before a value or key that follows another in the same container.
    private mutating func separate() {
        if needsComma { bytes.append(UInt8(ascii: ",")) }
    }

    private mutating func markValue() {
        needsComma = true
    }
}
