/// Collects the problems found while decoding one file, so that decoding can go on after each of them.
struct Diagnostics {
    /// The file the problems are reported against.
    let file: String
    /// The problems, in the order they were found.
    private(set) var errors: [ConfigurationError] = []

    init(file: String) {
        self.file = file
    }

    /// Records a problem at a node.
    mutating func error(_ message: String, at node: YAMLNode) {
        error(message, at: node.position)
    }

    /// Records a problem at a position, or about the whole file when `position` is nil.
    mutating func error(_ message: String, at position: SourcePosition?) {
        errors.append(ConfigurationError(file: file, position: position, message: message))
    }

    /// The problems in file order; problems found at the same place keep the order they were found in.
    var sortedErrors: [ConfigurationError] {
        errors.enumerated().sorted { left, right in
            switch (left.element.position, right.element.position) {
            case (nil, nil): return left.offset < right.offset
            case (nil, _): return true
            case (_, nil): return false
            case (let l?, let r?): return l == r ? left.offset < right.offset : l < r
            }
        }.map(\.element)
    }
}

/// The entries of a YAML mapping after duplicate and unknown keys were reported, looked up by key.
struct KeyedNodes {
    /// The recognised entries, in file order, each key once (its first occurrence).
    private(set) var entries: [(name: String, key: YAMLNode, value: YAMLNode)] = []

    /// The value of `name`, if the mapping has it.
    subscript(name: String) -> YAMLNode? {
        entries.first { $0.name == name }?.value
    }

    /// The key node of `name`, if the mapping has it.
    func keyNode(_ name: String) -> YAMLNode? {
        entries.first { $0.name == name }?.key
    }

    fileprivate mutating func reserveCapacity(_ count: Int) {
        entries.reserveCapacity(count)
    }

    fileprivate mutating func append(name: String, key: YAMLNode, value: YAMLNode) {
        entries.append((name, key, value))
    }
}

extension Diagnostics {
    /// Reads a mapping whose keys come from a fixed set, reporting a wrong type, non-text keys, duplicate keys
    /// (at the second occurrence; libyaml accepts them) and unknown keys (with the nearest valid key).
    ///
    /// - Parameters:
    ///   - node: the node that should be a mapping.
    ///   - name: how to call the node in a type error, e.g. `'control'`.
    ///   - validKeys: the keys allowed, in the order they are documented; `nil` allows any key (service names).
    ///   - keyNoun: what a key is called in the duplicate-key error (`service` for the names under `services`).
    mutating func mapping(
        _ node: YAMLNode,
        named name: @autoclosure () -> String,
        validKeys: [String]?,
        keyNoun: String = "key"
    ) -> KeyedNodes? {
        guard case .mapping(let entries) = node.content else {
            error("\(name()) must be a mapping, found \(node.found)", at: node)
            return nil
        }
        var result = KeyedNodes()
        result.reserveCapacity(entries.count)
        // A service's few keys are checked for duplicates by a scan, which costs less than hashing them; only a
        // long mapping (the services themselves) gets a dictionary.
        var seen: [(key: String, position: SourcePosition)] = []
        var firstPositions: [String: SourcePosition] = [:]
        let indexed = entries.count > 16
        if indexed { firstPositions.reserveCapacity(entries.count) } else { seen.reserveCapacity(entries.count) }
        for entry in entries {
            guard let key = entry.key.scalarText, !entry.key.isNull else {
                error("keys must be text, found \(entry.key.found)", at: entry.key)
                continue
            }
            let first = indexed ? firstPositions[key] : seen.first(where: { $0.key == key })?.position
            if let first {
                error("duplicate \(keyNoun) '\(key)' (first at \(first))", at: entry.key)
                continue
            }
            if indexed { firstPositions[key] = entry.key.position } else { seen.append((key, entry.key.position)) }
            if let validKeys, !validKeys.contains(key) {
                var message = "unknown key '\(key)'"
                if let suggestion = NearestKey.suggestion(for: key, among: validKeys) {
                    message += "; did you mean '\(suggestion)'?"
                } else if validKeys.count <= 6 {
                    message += "; expected one of: \(validKeys.joined(separator: ", "))"
                }
                error(message, at: entry.key)
                continue
            }
            result.append(name: key, key: entry.key, value: entry.value)
        }
        return result
    }
}
