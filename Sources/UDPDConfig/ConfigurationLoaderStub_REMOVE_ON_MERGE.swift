// TEMPORARY: lets udpctl compile on the `control` branch before the real loader lands from the `config` branch.
// Drop this file (and its commit) on merge; the real `ConfigurationLoader.load(path:)` replaces it.

/// Stand-in for the real loader: returns an empty configuration for `path` without reading it.
public enum ConfigurationLoader {
    /// Returns `Configuration(file: path)`; the real loader parses and validates the file.
    public static func load(path: String) throws -> Configuration { Configuration(file: path) }
}
