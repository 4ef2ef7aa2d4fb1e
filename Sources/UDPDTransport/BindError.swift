import CUDPD

/// A listener that could not be opened: which protocol, address and port, and the system call that failed.
public struct BindError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is.
    public enum Code: Sendable, Equatable {
        /// Another socket, in this or another process, holds the address and port (`EADDRINUSE`).
        case addressInUse
        /// The address is not configured on this host (`EADDRNOTAVAIL`).
        case addressNotAvailable
        /// The port needs privileges udpd does not have (`EACCES`).
        case permissionDenied
        /// The host has no support for this address family (`EAFNOSUPPORT`).
        case familyNotSupported
        /// Any other failure.
        case other
    }

    /// What kind of failure this is.
    public var code: Code
    /// `udp` or `tcp`.
    public var proto: String
    /// The endpoint that was being opened.
    public var endpoint: IPEndpoint
    /// The failed system call.
    public var underlying: SystemCallError

    /// Creates a bind error, classifying the system call's `errno`.
    public init(proto: String, endpoint: IPEndpoint, underlying: SystemCallError) {
        self.proto = proto
        self.endpoint = endpoint
        self.underlying = underlying
        self.code = Self.classify(underlying.errno)
    }

    private static func classify(_ error: Int32) -> Code {
        switch error {
        case EADDRINUSE: .addressInUse
        case EADDRNOTAVAIL: .addressNotAvailable
        case EACCES, EPERM: .permissionDenied
        case EAFNOSUPPORT, EPROTONOSUPPORT: .familyNotSupported
        default: .other
        }
    }

    public var description: String {
        let what = "\(proto) \(endpoint)"
        switch code {
        case .addressInUse:
            return "cannot bind \(what): the port is already in use by another socket"
        default:
            return "cannot open \(what): \(underlying.call): \(underlying.reason)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
