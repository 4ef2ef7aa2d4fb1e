/// A node of a parsed YAML document, keeping where it starts in the file.
///
/// udpd needs only three kinds of node. Scalars keep whether they were written plain or quoted: a plain `7` is a
/// number, a quoted `"7"` is text, and the configuration says which one it expects.
struct YAMLNode: Sendable {
    /// How a scalar was written.
    enum ScalarStyle: Sendable {
        /// Unquoted: numbers, booleans and null are recognised.
        case plain
        /// Single- or double-quoted, literal, folded, or tagged `!!str`: always text.
        case quoted
    }

    /// One key and its value in a mapping.
    struct Entry: Sendable {
        var key: YAMLNode
        var value: YAMLNode
    }

    /// What the node holds.
    enum Content: Sendable {
        case scalar(String, ScalarStyle)
        case sequence([YAMLNode])
        case mapping([Entry])
    }

    var content: Content
    /// Where the node starts (for a block mapping or sequence: its first key or item).
    var position: SourcePosition

    /// The text of a scalar node of any style; `nil` for a sequence or mapping.
    var scalarText: String? {
        if case .scalar(let text, _) = content { return text }
        return nil
    }

    /// The text of an unquoted scalar; `nil` for a quoted scalar, a sequence or a mapping.
    var plainText: String? {
        if case .scalar(let text, .plain) = content { return text }
        return nil
    }

    /// Whether the node is YAML's null: nothing at all, `~` or `null` written plain.
    var isNull: Bool {
        guard let text = plainText else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(text)
    }

    /// The node as an operator would recognise it in an error message: `'seven'`, `the string "7"`, `a list`.
    var found: String {
        switch content {
        case .scalar(let text, .plain):
            return isNull ? "an empty value" : "'\(Self.abbreviated(text))'"
        case .scalar(let text, .quoted):
            return "the string \"\(Self.abbreviated(text))\""
        case .sequence:
            return "a list"
        case .mapping:
            return "a mapping"
        }
    }

    private static func abbreviated(_ text: String) -> String {
        text.count > 40 ? String(text.prefix(40)) + "..." : text
    }
}
