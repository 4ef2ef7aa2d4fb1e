#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads, decodes and validates udpd configuration files; the only entry point the rest of udpd uses.
///
/// Every problem in a file is reported in one pass, in file order, each at the position of the offending YAML node.
/// YAML-level problems (syntax, a second document, aliases) stop before decoding, since the tree is not trustworthy.
public enum ConfigurationLoader {
    /// Reads and validates the file against the schema and against this host; throws every problem found, in file
    /// order. `--check`, start and reload all come through here, so that they agree.
    ///
    /// A file that cannot be opened, is not a regular file, or is not UTF-8 is a single error.
    public static func load(path: String) throws(ConfigurationErrors) -> Configuration {
        let text: String
        do {
            text = try ConfigurationFile.readText(path: path)
        } catch {
            throw ConfigurationErrors(errors: [error])
        }
        return try parse(text: text, file: path, host: .current)
    }

    /// Validates YAML text as if read from `file` (used by tests and by `load`), without looking at the host.
    public static func parse(text: String, file: String) throws(ConfigurationErrors) -> Configuration {
        try parse(text: text, file: file, host: nil)
    }

    /// Validates YAML text; with `host`, also what the host must have now for the file to start.
    static func parse(text: String, file: String, host: HostFacts?) throws(ConfigurationErrors) -> Configuration {
        var diagnostics = Diagnostics(file: file)
        let outcome = YAMLParser.parse(text)
        for problem in outcome.problems {
            diagnostics.error(problem.message, at: problem.position)
        }
        if diagnostics.errors.isEmpty {
            let (configuration, services) = diagnostics.configuration(root: outcome.root)
            diagnostics.checkOverlaps(services, metrics: configuration.metrics)
            if let host { diagnostics.checkInterfaces(services, on: host) }
            if diagnostics.errors.isEmpty {
                return configuration
            }
        }
        throw ConfigurationErrors(errors: diagnostics.sortedErrors)
    }
}

/// What the configuration check needs to know about the host it runs on.
struct HostFacts {
    /// Whether a network interface of this name exists now.
    var interfaceExists: @Sendable (String) -> Bool

    /// The host udpd runs on.
    static let current = HostFacts { name in
        !name.utf8.contains(0) && if_nametoindex(name) != 0
    }
}

extension Diagnostics {
    /// What can be known before binding about interfaces: a wildcard socket limited by `interfaces` is bound to each
    /// device (SO_BINDTODEVICE), which needs the interface to exist now; a scoped address (`fe80::1%eth0`) needs its
    /// interface to be bound at all. `bind: per-address` may name interfaces that appear later: its addresses are
    /// followed as they come.
    mutating func checkInterfaces(_ services: [DecodedService], on host: HostFacts) {
        for service in services where service.bindIsValid {
            let definition = service.definition
            switch definition.bind {
            case .wildcard:
                for (name, position) in zip(definition.interfaces, service.interfacePositions)
                where !host.interfaceExists(name) {
                    error(
                        "interface '\(name)' does not exist on this host; a wildcard socket is bound to its "
                            + "interfaces when udpd starts (use 'bind: per-address' to serve interfaces that "
                            + "appear later)",
                        at: position
                    )
                }
            case .addresses(let addresses):
                for address in addresses {
                    guard let scope = address.scope, !host.interfaceExists(scope) else { continue }
                    error(
                        "the interface of '\(address.text)' ('\(scope)') does not exist on this host",
                        at: address.position ?? definition.position
                    )
                }
            case .perAddress:
                break
            }
        }
    }
}
