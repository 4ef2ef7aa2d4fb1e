/// Text taken from input (a configuration file, a path, an interface name, a peer) made safe to print on a terminal
/// or write to a log: every control character is written as an escape, so one message stays one line and carries
/// no terminal escape sequence.
///
/// Escaped: C0 controls and DEL (`\n`, `\r`, `\t`, others `\xHH`), C1 controls, the Unicode line and paragraph
/// separators and the bidirectional embedding, override and isolate marks (`\u{HHHH}`), which can make a line read
/// as another. A backslash is left as it is, so that escaping escaped text changes nothing: every layer that
/// prints may escape again without doubling. JSON output does not use this; its own escaping is exact.
public enum TextEscaping {
    /// `text` with every control character escaped; `text` itself (no copy) when it has none.
    public static func escaped(_ text: some StringProtocol) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return String(text) }
        var result = ""
        result.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                result.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                let hex = String(scalar.value, radix: 16)
                result += scalar.value < 0x80 ? "\\x" + (hex.count < 2 ? "0" + hex : hex) : "\\u{\(hex)}"
            }
        }
        return result
    }

    /// Whether `scalar` is one that ``escaped(_:)`` rewrites.
    public static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00...0x1F, 0x7F...0x9F: true
        case 0x2028, 0x2029, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }
}
