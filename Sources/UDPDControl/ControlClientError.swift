import UDPDTransport

/// Why a control request failed: the daemon could not be reached, did not answer in time, or answered nonsense.
public typealias ControlClientError = ControlSocketError<ControlClientErrorCode>

/// The ways a control request can fail.
public enum ControlClientErrorCode: ControlSocketErrorCode {
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

    /// One line for an operator: what failed, on which socket, and why.
    public func describe(path: String, detail: String, systemError: SystemCallError?) -> String {
        let reason = systemError?.reason ?? detail
        switch self {
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

extension ControlSocketError where Kind == ControlClientErrorCode {
    /// Whether no daemon could be reached at all (the operator's exit status 2), as opposed to a daemon that
    /// misbehaved.
    public var isUnreachable: Bool { code == .unreachable || code == .timedOut || code == .unsafePath }
}
