/// Decoders for single values. Each reports its own problem at the node and returns `nil`, so the caller goes on.
///
/// `name` is how the value is called in messages, usually the key in quotes: `'workers'`.
extension Diagnostics {
    /// Any scalar as text, quoted or plain; null and collections are errors.
    mutating func text(_ node: YAMLNode, named name: String, nonEmpty: Bool = true) -> String? {
        guard let text = node.scalarText, !node.isNull else {
            error("\(name) must be text, found \(node.found)", at: node)
            return nil
        }
        if nonEmpty, text.isEmpty {
            error("\(name) must not be empty", at: node)
            return nil
        }
        if text.utf8.contains(0) {
            error("\(name) must not contain NUL characters", at: node)
            return nil
        }
        return text
    }

    /// An unquoted `true` or `false`.
    mutating func boolean(_ node: YAMLNode, named name: String) -> Bool? {
        switch node.plainText {
        case "true": return true
        case "false": return false
        default:
            error("\(name) must be true or false, found \(node.found)", at: node)
            return nil
        }
    }

    /// An unquoted decimal integer within `bound` (whose ranges all start at 1 or more): text that is not one is
    /// "not a positive integer", digits beyond the range (even beyond 64 bits) are out of it, with the range.
    mutating func count(_ node: YAMLNode, within bound: CountBound) -> Int? {
        guard let text = node.plainText, !text.isEmpty,
            text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") })
        else {
            error("'\(bound.key)' must be a positive integer, found \(node.found)", at: node)
            return nil
        }
        switch Self.decimal(text) {
        case .some(0):
            error("'\(bound.key)' must be a positive integer, found \(node.found)", at: node)
        case .some(let value) where bound.range.contains(value):
            return value
        default:
            outOfRange(node, bound)
        }
        return nil
    }

    /// One of an enumeration's raw values, quoted or plain.
    mutating func choice<Choice: RawRepresentable & CaseIterable>(
        _ node: YAMLNode,
        named name: String,
        as type: Choice.Type
    ) -> Choice? where Choice.RawValue == String {
        let valid = Choice.allCases.map(\.rawValue)
        guard let text = node.scalarText, !node.isNull else {
            error("\(name) must be one of \(valid.joined(separator: ", ")), found \(node.found)", at: node)
            return nil
        }
        guard let value = Choice(rawValue: text) else {
            var message = "unknown \(name) '\(text)'"
            if let suggestion = NearestKey.suggestion(for: text, among: valid) {
                message += "; did you mean '\(suggestion)'?"
            }
            error(message + " (expected one of: \(valid.joined(separator: ", ")))", at: node)
            return nil
        }
        return value
    }

    /// One port number: an unquoted decimal integer in 1...65535.
    mutating func port(_ node: YAMLNode, protocolName: String) -> UInt16? {
        guard let text = node.plainText, let value = Self.decimal(text, allowingSign: true) else {
            error("expected a \(protocolName) port number (1-65535), found \(node.found)", at: node)
            return nil
        }
        guard ConfigurationBounds.port.range.contains(value) else {
            error("\(protocolName) port \(value) is out of range (1-65535)", at: node)
            return nil
        }
        return UInt16(value)
    }

    /// `udp:` or `tcp:`: one port or a non-empty list of distinct ports, each with the position of its node.
    mutating func ports(_ node: YAMLNode, key: String) -> [(port: UInt16, position: SourcePosition)] {
        switch node.content {
        case .scalar where !node.isNull:
            return port(node, protocolName: key).map { [($0, node.position)] } ?? []
        case .sequence(let items):
            if items.isEmpty {
                error("'\(key)' must list at least one port; remove the key to serve no \(key) ports", at: node)
            }
            var result: [(port: UInt16, position: SourcePosition)] = []
            for item in items {
                guard let value = port(item, protocolName: key) else { continue }
                if let first = result.first(where: { $0.port == value }) {
                    error("duplicate \(key) port \(value) (first at \(first.position))", at: item)
                    continue
                }
                result.append((value, item.position))
            }
            return result
        default:
            error("'\(key)' must be a port number (1-65535) or a list of them, found \(node.found)", at: node)
            return []
        }
    }

    /// A list of non-empty text items.
    mutating func textList(_ node: YAMLNode, named name: String, nonEmpty: Bool) -> [String]? {
        guard case .sequence(let items) = node.content else {
            error("\(name) must be a list, found \(node.found)", at: node)
            return nil
        }
        if nonEmpty, items.isEmpty {
            error("\(name) must not be an empty list", at: node)
            return nil
        }
        var result: [String] = []
        var valid = true
        for item in items {
            if let value = text(item, named: "each item of \(name)") {
                result.append(value)
            } else {
                valid = false
            }
        }
        return valid ? result : nil
    }

    /// A decimal integer without leading `+` unless `allowingSign`; `nil` on anything else or on overflow.
    ///
    /// Reads the UTF-8 bytes: asking each Character whether it is a number consulted Unicode tables for every
    /// port of a thousand-service file.
    static func decimal(_ text: String, allowingSign: Bool = false) -> Int? {
        var digits = Substring(text).utf8
        var negative = false
        if allowingSign, let first = digits.first, first == UInt8(ascii: "-") || first == UInt8(ascii: "+") {
            negative = first == UInt8(ascii: "-")
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty else { return nil }
        var value = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (shifted, overflowShifting) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflowAdding) = shifted.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflowShifting, !overflowAdding else { return nil }
            value = sum
        }
        return negative ? -value : value
    }
}
