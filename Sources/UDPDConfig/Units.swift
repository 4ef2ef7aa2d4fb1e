/// Durations (`500ms`, `30s`, `2m`, `1h`), sizes (`512`, `64KiB`, `1MiB`, `1GiB`) and rates (`100/s`).
///
/// Units are required for durations (a bare `30` could mean seconds or milliseconds) and optional for sizes
/// (bytes). Only binary size units exist: `64KB` is rejected rather than guessed.
enum Units {
    /// What reading a value found: a value, a well-formed one too large to represent, or text of the wrong form.
    enum Reading<Value> {
        case value(Value)
        /// Digits and a unit, but more than 64 bits hold: out of every range, not malformed.
        case tooLarge
        case malformed

        var value: Value? {
            if case .value(let value) = self { value } else { nil }
        }
    }

    private static let durationUnits: [(suffix: String, milliseconds: Int)] = [
        ("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000),
    ]
    private static let sizeUnits: [(suffix: String, bytes: Int)] = [
        ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30),
    ]

    /// The duration written as `<digits><unit>`, with unit `ms`, `s`, `m` or `h`; `nil` unless positive and valid.
    static func duration(_ text: String) -> Duration? { readDuration(text).value }

    /// The number of bytes written as `<digits>` or `<digits><unit>`, with unit `KiB`, `MiB` or `GiB`.
    static func size(_ text: String) -> Int? { readSize(text).value }

    /// The count of a rate written `<digits>/s`.
    static func perSecond(_ text: String) -> Int? { readPerSecond(text).value }

    /// ``duration(_:)``, telling a value too large for 64 bits from a malformed one.
    static func readDuration(_ text: String) -> Reading<Duration> {
        for unit in durationUnits where text.hasSuffix(unit.suffix) {
            return scaled(text.dropLast(unit.suffix.count), by: unit.milliseconds).map(Duration.milliseconds)
        }
        return .malformed
    }

    /// ``size(_:)``, telling a value too large for 64 bits from a malformed one.
    static func readSize(_ text: String) -> Reading<Int> {
        for unit in sizeUnits where text.hasSuffix(unit.suffix) {
            return scaled(text.dropLast(unit.suffix.count), by: unit.bytes)
        }
        return scaled(Substring(text), by: 1)
    }

    /// ``perSecond(_:)``, telling a value too large for 64 bits from a malformed one.
    static func readPerSecond(_ text: String) -> Reading<Int> {
        guard text.hasSuffix("/s") else { return .malformed }
        return scaled(text.dropLast(2), by: 1)
    }

    /// A size as an operator would write it: with the largest binary unit that divides it, else in bytes.
    static func text(bytes: Int) -> String {
        for unit in sizeUnits.reversed() where bytes >= unit.bytes && bytes % unit.bytes == 0 {
            return "\(bytes / unit.bytes)\(unit.suffix)"
        }
        return "\(bytes)"
    }

    /// A duration as an operator would write it: with the largest unit that divides it (whole milliseconds).
    static func text(duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let (fromSeconds, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        let milliseconds = overflow ? Int64.max : fromSeconds &+ attoseconds / 1_000_000_000_000_000
        for unit in durationUnits.reversed() where milliseconds % Int64(unit.milliseconds) == 0 {
            return "\(milliseconds / Int64(unit.milliseconds))\(unit.suffix)"
        }
        return "\(milliseconds)ms"
    }

    /// Positive decimal digits times `factor`.
    private static func scaled(_ digits: Substring, by factor: Int) -> Reading<Int> {
        guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return .malformed
        }
        guard let count = Int(digits) else { return .tooLarge }
        guard count > 0 else { return .malformed }
        let (total, overflow) = count.multipliedReportingOverflow(by: factor)
        return overflow ? .tooLarge : .value(total)
    }
}

extension Units.Reading {
    func map<Other>(_ transform: (Value) -> Other) -> Units.Reading<Other> {
        switch self {
        case .value(let value): .value(transform(value))
        case .tooLarge: .tooLarge
        case .malformed: .malformed
        }
    }
}

extension Diagnostics {
    /// A duration such as `500ms` within `bound`, quoted or plain.
    mutating func duration(_ node: YAMLNode, within bound: DurationBound) -> Duration? {
        let reading = node.scalarText.map(Units.readDuration) ?? .malformed
        guard case .malformed = reading else { return inRange(reading, of: node, within: bound.range, bound) }
        error(
            "'\(bound.key)' must be a positive duration such as 500ms, 30s, 2m or 1h, found \(node.found)",
            at: node
        )
        return nil
    }

    /// A size in bytes such as `512` or `64KiB` within `bound`, quoted or plain.
    mutating func size(_ node: YAMLNode, within bound: SizeBound) -> Int? {
        let reading = node.scalarText.map(Units.readSize) ?? .malformed
        guard case .malformed = reading else { return inRange(reading, of: node, within: bound.range, bound) }
        error("'\(bound.key)' must be a positive size such as 512, 64KiB or 1MiB, found \(node.found)", at: node)
        return nil
    }

    /// The value read, when it lies in `range`; otherwise the error that names the key, the value and the range.
    private mutating func inRange<Value: Comparable>(
        _ reading: Units.Reading<Value>,
        of node: YAMLNode,
        within range: ClosedRange<Value>,
        _ bound: any ConfigurationBound
    ) -> Value? {
        if let value = reading.value, range.contains(value) { return value }
        outOfRange(node, bound)
        return nil
    }

    /// `'workers' must be from 1 to 1024 (threads serving each UDP port), found '9223372036854775807'`.
    mutating func outOfRange(_ node: YAMLNode, _ bound: any ConfigurationBound) {
        error("'\(bound.key)' must be from \(bound.rangeText) (\(bound.reason)), found \(node.found)", at: node)
    }

    /// `rate-limit: {per-source: N/s, burst: N, over-limit: drop | krb5-tcp}`; `burst` defaults to the per-second
    /// rate, `over-limit` to `drop`.
    mutating func rateLimit(_ node: YAMLNode) -> RateLimit? {
        guard let keys = mapping(node, named: "'rate-limit'", validKeys: ["per-source", "burst", "over-limit"])
        else { return nil }
        var perSecond: Int?
        if let rate = keys["per-source"] {
            let bound = ConfigurationBounds.ratePerSource
            switch rate.scalarText.map(Units.readPerSecond) ?? .malformed {
            case .malformed:
                error("'per-source' must be a rate such as 100/s, found \(rate.found)", at: rate)
            case .value(let value) where bound.range.contains(value):
                perSecond = value
            case .value, .tooLarge:
                outOfRange(rate, bound)
            }
        } else {
            error("'rate-limit' needs 'per-source' (a rate such as 100/s)", at: node)
        }
        let burst = keys["burst"].flatMap { count($0, within: ConfigurationBounds.rateBurst) }
        let overLimit = keys["over-limit"].map { choice($0, named: "over-limit", as: RateLimit.OverLimit.self) }
            ?? .drop
        guard let perSecond, let overLimit, keys["burst"] == nil || burst != nil else { return nil }
        return RateLimit(perSecond: perSecond, burst: burst ?? perSecond, overLimit: overLimit)
    }
}
