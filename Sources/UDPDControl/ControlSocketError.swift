import UDPDTransport

/// What failed on the control socket, on which path, and why: the one shape of ``ControlClientError`` and
/// ``ControlServerError``, whose `Code` says which step failed and words the line an operator reads.
public struct ControlSocketError<Kind: ControlSocketErrorCode>: Error, Sendable, Equatable, CustomStringConvertible {
    /// The failures of this side of the socket (`ControlClientError.Code`, `ControlServerError.Code`).
    public typealias Code = Kind

    /// What went wrong.
    public var code: Code
    /// The control socket's path (or, for a directory failure, the directory).
    public var path: String
    /// The failing system call and `errno`, when there was one.
    public var systemError: SystemCallError?
    /// More words, when the code and the system error do not say everything.
    public var detail: String

    /// Creates an error.
    public init(_ code: Code, path: String, systemError: SystemCallError? = nil, detail: String = "") {
        self.code = code
        self.path = path
        self.systemError = systemError
        self.detail = detail
    }

    /// One line for an operator: what failed, on which path, and why.
    public var description: String { code.describe(path: path, detail: detail, systemError: systemError) }
}

/// The failures of one side of the control socket, each worded for an operator.
public protocol ControlSocketErrorCode: Sendable, Equatable {
    /// One line saying that this failed on `path`, with `detail` and `systemError` as the reason.
    func describe(path: String, detail: String, systemError: SystemCallError?) -> String
}
