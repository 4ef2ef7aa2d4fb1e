/// A minimal JSON writer for the daemon's answers: objects, arrays, strings, integers, doubles, booleans, null.
///
/// Status with a thousand services is about 400 KB of JSON; Foundation's `JSONEncoder` spends tens of milliseconds on
/// it, while writing bytes directly takes a couple. The reader's side keeps `Codable`, so what this writes is checked
/// against the `Decodable` conformances in the tests. Keys are written in sorted order, as `encodeLine` does.
///
/// The bytes go to a buffer the writer owns and grows itself (hence `~Copyable`), one bounds check per write:
/// Array's uniqueness and capacity checks on each of the ~120,000 small appends of a 1,000-service status were
/// a third of the writer's time. ``finish()`` hands the bytes over as an array.
struct JSONWriter: ~Copyable {
    private var storage: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    private var count = 0
    /// Whether the next value or key follows another in the same container and so needs a comma. One flag is
    /// enough for any nesting: a container starts without one, and a container that ends is a value of its parent.
    private var needsComma = false

    init(reservingCapacity capacity: Int = 4096) {
        self.capacity = max(capacity, 64)
        storage = UnsafeMutablePointer<UInt8>.allocate(capacity: self.capacity)
    }

    deinit {
        storage.deallocate()
    }

    /// The bytes written so far, as an array; the writer is done.
    consuming func finish() -> [UInt8] {
        Array(UnsafeBufferPointer(start: storage, count: count))
    }

    /// Makes room for `extra` more bytes.
    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        guard count + extra > capacity else { return }
        let grown = max(capacity * 2, count + extra)
        let larger = UnsafeMutablePointer<UInt8>.allocate(capacity: grown)
        larger.update(from: storage, count: count)
        storage.deallocate()
        storage = larger
        capacity = grown
    }

    @inline(__always)
    private mutating func append(_ byte: UInt8) {
        reserve(1)
        storage[count] = byte
        count += 1
    }

    @inline(__always)
    private mutating func append(_ first: UInt8, _ second: UInt8) {
        reserve(2)
        storage[count] = first
        storage[count + 1] = second
        count += 2
    }

    @inline(__always)
    private mutating func append(contentsOf buffer: UnsafeBufferPointer<UInt8>) {
        guard let base = buffer.baseAddress, !buffer.isEmpty else { return }
        reserve(buffer.count)
        (storage + count).update(from: base, count: buffer.count)
        count += buffer.count
    }

    private mutating func append(contentsOf bytes: some Sequence<UInt8>) {
        for byte in bytes { append(byte) }
    }

    mutating func beginObject() {
        separate()
        append(UInt8(ascii: "{"))
        needsComma = false
    }

    mutating func endObject() {
        append(UInt8(ascii: "}"))
        markValue()
    }

    mutating func beginArray() {
        separate()
        append(UInt8(ascii: "["))
        needsComma = false
    }

    mutating func endArray() {
        append(UInt8(ascii: "]"))
        markValue()
    }

    /// Writes `"name":` for a field, named as the type's `CodingKeys` name it (the one spelling the reader's
    /// `Decodable` conformance uses too); the value follows. Keys are plain identifiers: nothing to escape.
    mutating func key(_ codingKey: some CodingKey) {
        separate()
        append(UInt8(ascii: "\""))
        var name = codingKey.stringValue
        name.withUTF8 { append(contentsOf: $0) }
        append(UInt8(ascii: "\""), UInt8(ascii: ":"))
        needsComma = false
    }

    /// Writes `"name":` for a key that is data (a drop reason).
    mutating func key(_ name: String) {
        string(name)
        append(UInt8(ascii: ":"))
        needsComma = false
    }

    mutating func string(_ value: String) {
        separate()
        append(UInt8(ascii: "\""))
        let utf8 = value.utf8
        // Almost every string (names, addresses, reasons) needs no escaping: one scan, then one copy.
        let copied = utf8.withContiguousStorageIfAvailable { buffer -> Bool in
            for byte in buffer where Self.needsEscaping(byte) { return false }
            append(contentsOf: buffer)
            return true
        }
        switch copied {
        case true?:
            break
        case false?:
            appendEscaped(utf8)
        case nil:
            if utf8.contains(where: Self.needsEscaping) { appendEscaped(utf8) } else { append(contentsOf: utf8) }
        }
        append(UInt8(ascii: "\""))
        markValue()
    }

    private static func needsEscaping(_ byte: UInt8) -> Bool {
        byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    private mutating func appendEscaped(_ utf8: String.UTF8View) {
        for byte in utf8 {
            switch byte {
            case UInt8(ascii: "\""): append(UInt8(ascii: "\\"), UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): append(UInt8(ascii: "\\"), UInt8(ascii: "\\"))
            case UInt8(ascii: "\n"): append(UInt8(ascii: "\\"), UInt8(ascii: "n"))
            case UInt8(ascii: "\r"): append(UInt8(ascii: "\\"), UInt8(ascii: "r"))
            case UInt8(ascii: "\t"): append(UInt8(ascii: "\\"), UInt8(ascii: "t"))
            case 0..<0x20:
                let hex: StaticString = "0123456789abcdef"
                append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0")])
                hex.withUTF8Buffer {
                    append($0[Int(byte >> 4)])
                    append($0[Int(byte & 0xf)])
                }
            default:
                append(byte)
            }
        }
    }

    mutating func integer<Value: BinaryInteger>(_ value: Value) {
        separate()
        if value < 0 {
            append(UInt8(ascii: "-"))
            appendDigits(UInt64(value.magnitude))
        } else {
            appendDigits(UInt64(value))
        }
        markValue()
    }

    /// Writes the decimal digits of `value` without building a String.
    private mutating func appendDigits(_ value: UInt64) {
        guard value > 0 else {
            append(UInt8(ascii: "0"))
            return
        }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // room for 20 digits, most significant last
        var digitCount = 0
        var rest = value
        withUnsafeMutableBytes(of: &digits) { buffer in
            while rest > 0 {
                buffer[digitCount] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
                digitCount += 1
            }
        }
        reserve(digitCount)
        withUnsafeBytes(of: &digits) { buffer in
            for index in stride(from: digitCount - 1, through: 0, by: -1) {
                storage[count] = buffer[index]
                count += 1
            }
        }
    }

    mutating func double(_ value: Double) {
        separate()
        append(contentsOf: (value.isFinite ? String(value) : "0").utf8)
        markValue()
    }

    mutating func bool(_ value: Bool) {
        separate()
        append(contentsOf: (value ? "true" : "false").utf8)
        markValue()
    }

    mutating func null() {
        separate()
        append(contentsOf: "null".utf8)
        markValue()
    }

    /// Ends the line (a complete answer), in place: appending to a copy of ``bytes`` copied the whole answer.
    mutating func newline() {
        append(UInt8(ascii: "\n"))
    }

    mutating func strings(_ values: [String]) {
        beginArray()
        for value in values { string(value) }
        endArray()
    }

    /// Puts a comma before a value or key that follows another in the same container.
    private mutating func separate() {
        if needsComma { append(UInt8(ascii: ",")) }
    }

    private mutating func markValue() {
        needsComma = true
    }
}
