/// Durations (`500ms`, `30s`, `2m`, `1h`), sizes (`512`, `64KiB`, `1MiB`, `1GiB`) and rates (`100/s`).
///
/// Units are required for durations (a bare `30` could mean seconds or milliseconds) and optional for sizes
/// (bytes). Only binary size units exist: `64KB` is rejected rather than guessed.
enum Units {
    /// The duration written as `<digits><unit>`, with unit `ms`, `s`, `m` or `h`; `nil` unless positive and valid.
    static func duration(_ text: String) -> Duration? {
        let units: [(suffix: String, milliseconds: Int)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let count = positive(text.dropLast(unit.suffix.count)) else { return nil }
            let (total, overflow) = count.multipliedReportingOverflow(by: unit.milliseconds)
            return overflow ? nil : .milliseconds(total)
        }
        return nil
    }

    /// The number of bytes written as `<digits>` or `<digits><unit>`, with unit `KiB`, `MiB` or `GiB`.
    static func size(_ text: String) -> Int? {
        let units: [(suffix: String, bytes: Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)]
        for unit in units where text.hasSuffix(unit.suffix) {
            guard let count = positive(text.dropLast(unit.suffix.count)) else { return nil }
            let (total, overflow) = count.multipliedReportingOverflow(by: unit.bytes)
            return overflow ? nil : total
        }
        return positive(Substring(text))
    }

    /// The count of a rate written `<digits>/s`.
    static func perSecond(_ text: String) -> Int? {
        guard text.hasSuffix("/s") else { return nil }
        return positive(text.dropLast(2))
    }

    private static func positive(_ digits: Substring) -> Int? {
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits), value > 0
        else { return nil }
        return value
    }
}

extension Diagnostics {
    /// A positive duration such as `500ms`, quoted or plain.
    mutating func duration(_ node: YAMLNode, named name: String) -> Duration? {
        guard let text = node.scalarText, let value = Units.duration(text) else {
            error("\(name) must be a positive duration such as 500ms, 30s, 2m or 1h, found \(node.found)", at: node)
            return nil
        }
        return value
    }

    /// A positive size in bytes such as `512` or `64KiB`, quoted or plain.
    mutating func size(_ node: YAMLNode, named name: String) -> Int? {
        guard let text = node.scalarText, let value = Units.size(text) else {
            error("\(name) must be a positive size such as 512, 64KiB or 1MiB, found \(node.found)", at: node)
            return nil
        }
        return value
    }

    /// `rate-limit: {per-source: N/s, burst: N}`; `burst` defaults to the per-second rate.
    mutating func rateLimit(_ node: YAMLNode) -> RateLimit? {
        guard let keys = mapping(node, named: "'rate-limit'", validKeys: ["per-source", "burst"]) else { return nil }
        var perSecond: Int?
        if let rate = keys["per-source"] {
            perSecond = rate.scalarText.flatMap(Units.perSecond)
            if perSecond == nil {
                error("'per-source' must be a rate such as 100/s, found \(rate.found)", at: rate)
            }
        } else {
            error("'rate-limit' needs 'per-source' (a rate such as 100/s)", at: node)
        }
        let burst = keys["burst"].flatMap { positiveInteger($0, named: "'burst'") }
        guard let perSecond, keys["burst"] == nil || burst != nil else { return nil }
        return RateLimit(perSecond: perSecond, burst: burst ?? perSecond)
    }
}
