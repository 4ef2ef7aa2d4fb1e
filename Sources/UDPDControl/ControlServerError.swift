import UDPDTransport

/// Why the control server could not start: what failed, on which path, and the system's reason.
public typealias ControlServerError = ControlSocketError<ControlServerErrorCode>

/// The step of starting the control server that failed.
public enum ControlServerErrorCode: ControlSocketErrorCode {
    /// Another daemon answers on the socket path.
    case alreadyRunning
    /// Something that is not a socket sits at the path; it is left alone.
    case notASocket
    /// The path does not fit in a `sockaddr_un`.
    case pathTooLong
    /// The socket's directory could not be created, or is not safe to use.
    case directory
    /// A directory on the way to the socket (named by the error's path) could be changed by someone other than
    /// root and the daemon's users, who could then swap the socket.
    case unsafePath
    /// Checking whether the socket file is alive, or removing a stale one, failed.
    case staleSocket
    /// Binding the socket failed.
    case bind
    /// Setting the socket file's mode failed.
    case permissions

    /// One line for an operator: what failed, on which path, and the system's reason.
    public func describe(path: String, detail: String, systemError: SystemCallError?) -> String {
        var text: String
        switch self {
        case .alreadyRunning: text = "another udpd is already answering on control socket \(path)"
        case .notASocket: text = "\(path) exists and is not a socket; refusing to replace it"
        case .pathTooLong: text = "control socket path is too long: \(path)"
        case .directory: text = "cannot use control socket directory \(path)"
        case .unsafePath: text = "refusing to put the control socket below \(path)"
        case .staleSocket: text = "cannot replace stale control socket \(path)"
        case .bind: text = "cannot bind control socket \(path)"
        case .permissions: text = "cannot set the mode of control socket \(path)"
        }
        if !detail.isEmpty { text += ": \(detail)" }
        if let systemError { text += ": \(systemError)" }
        return text
    }
}

extension ControlSocketError where Kind == ControlServerErrorCode {
    /// A daemon already answers on `path`.
    public static func alreadyRunning(_ path: String) -> ControlServerError {
        ControlServerError(.alreadyRunning, path: path)
    }
}
