@testable import UDPDConfig

/// The error lines `parse(text:file:)` reports for `yaml`, or `[]` when it is valid.
func errorLines(_ yaml: String, file: String = "t.yaml") -> [String] {
    do {
        _ = try ConfigurationLoader.parse(text: yaml, file: file)
        return []
    } catch {
        return error.errors.map(\.description)
    }
}

/// The configuration `yaml` decodes to, even when it has errors, and those errors; for checking the decoding of
/// keys that are recognised but not implemented yet.
func decodeIgnoringErrors(_ yaml: String) -> (Configuration, [String]) {
    let outcome = YAMLParser.parse(yaml)
    var diagnostics = Diagnostics(file: "t.yaml")
    let (configuration, _) = diagnostics.configuration(root: outcome.root)
    return (configuration, diagnostics.sortedErrors.map(\.description))
}

/// A minimal valid service block under `services:`, for tests that only vary one key; the extra lines are indented
/// as service keys. Line 1 is `services:`, line 2 `  s:`, line 3 `    handler: echo`, line 4 `    udp: 7`, and
/// `extra` starts on line 5.
func service(_ extra: String = "", handler: String = "echo", ports: String = "udp: 7") -> String {
    let lines = extra.split(separator: "\n", omittingEmptySubsequences: false).map { "    " + $0 }
    return "services:\n  s:\n    handler: \(handler)\n    \(ports)\n"
        + (extra.isEmpty ? "" : lines.joined(separator: "\n") + "\n")
}
