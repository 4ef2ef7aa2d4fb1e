import UDPDTransport

/// Why a control request failed: the daemon could not be reached, did not answer in time, or answered nonsense.
public struct ControlClientError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The ways a request can fail.
    public enum Code: Sendable, Equatable {
        /// Connecting failed: no socket at the path, nobody listening, no permission, or a path too long.
        case unreachable
        /// A directory on the way to the socket, or the socket file, could be changed by someone other than root, the
        /// caller and the daemon's user: nothing was sent, the answer could be forged.
        case unsafePath
        /// The daemon accepted the connection but did not answer within the timeout.
        case timedOut
        /// Sending the request or reading the answer failed, or the daemon closed the connection without answering.
        case connectionLost
        /// The answer was not a valid response.
        case invalidResponse
    }

    /// What went wrong.
    public var code: Code
    /// The control socket's path.
    public var path: String
    /// The failing system call, when there was one.
    public var systemError: SystemCallError?
    /// More words for a person.
    public var detail: String

    /// Creates an error.
    public init(_ code: Code, path: String, systemError: SystemCallError? = nil, detail: String = "") {
        self.code = code
        self.path = path
        self.systemError = systemError
        self.detail = detail
    }

    /// Whether no daemon could be reached at all (the operator's exit status 2), as opposed to a daemon that
    /// misbehaved.
    public var isUnreachable: Bool { code == .unreachable || code == .timedOut || code == .unsafePath }

    /// One line for an operator: what failed, on which socket, and why.
    public var description: String {
        let reason = systemError?.reason ?? detail
        switch code {
        case .unreachable:
            return "no daemon is listening on \(path): \(reason)"
        case .unsafePath:
            return "refusing to talk to the daemon on \(path): \(detail)"
        case .timedOut:
            return "the daemon on \(path) did not answer within \(detail)"
        case .connectionLost:
            return "lost the connection to the daemon on \(path): \(reason)"
        case .invalidResponse:
            return "the daemon on \(path) sent an invalid response: \(detail)"
        }
    }
}
