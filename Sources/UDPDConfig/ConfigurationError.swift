/// One problem with a configuration file, with the position of the YAML node it concerns.
///
/// Its `description` is the line an operator reads: `FILE:LINE:COLUMN: error: MESSAGE`, or `FILE: error: MESSAGE`
/// when the problem concerns the file as a whole (it cannot be opened, for instance). The path and the message are
/// escaped (``TextEscaping``) there: a message quotes what the file says, and a name holding a newline or an escape
/// sequence must not print a second, forged error line or drive the terminal. One error is one line, always.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The configuration file's path, as given by the operator.
    public var file: String
    /// Where the offending node starts; `nil` when the problem is the file itself.
    public var position: SourcePosition?
    /// What is wrong, for an operator.
    public var message: String

    /// Creates an error.
    public init(file: String, position: SourcePosition?, message: String) {
        self.file = file
        self.position = position
        self.message = message
    }

    /// `FILE:LINE:COLUMN: error: MESSAGE`, or `FILE: error: MESSAGE` without a position; one line, escaped.
    public var description: String {
        let file = TextEscaping.escaped(file)
        let message = TextEscaping.escaped(message)
        if let position {
            return "\(file):\(position.line):\(position.column): error: \(message)"
        }
        return "\(file): error: \(message)"
    }
}

/// Every problem found in one configuration file, in file order; thrown by `ConfigurationLoader`.
///
/// A loader collects all problems in one pass so an operator fixes a file in one round, not one error at a time.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    /// The problems, sorted by position; problems without a position come first.
    public var errors: [ConfigurationError]

    /// Creates the collection, keeping the given order.
    public init(errors: [ConfigurationError]) {
        self.errors = errors
    }

    /// One `FILE:LINE:COLUMN: error: MESSAGE` line per problem.
    public var description: String {
        errors.map(\.description).joined(separator: "\n")
    }
}
