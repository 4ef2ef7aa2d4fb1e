/// Reads, decodes and validates udpd configuration files; the only entry point the rest of udpd uses.
///
/// Every problem in a file is reported in one pass, in file order, each at the position of the offending YAML node.
/// YAML-level problems (syntax, a second document, aliases) stop before decoding, since the tree is not trustworthy.
public enum ConfigurationLoader {
    /// Service keys that are parsed and validated but not yet acted on by udpd; using one is an error, so that an
    /// operator who writes `rate-limit:` is never silently unprotected. Remove a key here when its feature lands.
    public static let unimplementedServiceKeys: Set<String> = []

    /// Top-level keys that are parsed and validated but not yet acted on; using one is an error.
    public static let unimplementedTopLevelKeys: Set<String> = []

    /// `bind:` policies that are parsed but not yet acted on; using one is an error.
    public static let unimplementedBindPolicies: Set<String> = []

    /// Reads and validates the file; throws every problem found, in file order.
    ///
    /// A file that cannot be opened, is not a regular file, or is not UTF-8 is a single error.
    public static func load(path: String) throws(ConfigurationErrors) -> Configuration {
        let text: String
        do {
            text = try ConfigurationFile.readText(path: path)
        } catch {
            throw ConfigurationErrors(errors: [error])
        }
        return try parse(text: text, file: path)
    }

    /// Validates YAML text as if read from `file` (used by tests and by `load`).
    public static func parse(text: String, file: String) throws(ConfigurationErrors) -> Configuration {
        var diagnostics = Diagnostics(file: file)
        let outcome = YAMLParser.parse(text)
        for problem in outcome.problems {
            diagnostics.error(problem.message, at: problem.position)
        }
        if diagnostics.errors.isEmpty {
            let (configuration, services) = diagnostics.configuration(root: outcome.root)
            diagnostics.checkOverlaps(services)
            if diagnostics.errors.isEmpty {
                return configuration
            }
        }
        throw ConfigurationErrors(errors: diagnostics.sortedErrors)
    }

    /// The message for a feature that is recognised but not implemented yet.
    static func notImplemented(_ what: String) -> String {
        "\(what) is recognised but not implemented in this version of udpd"
    }
}
