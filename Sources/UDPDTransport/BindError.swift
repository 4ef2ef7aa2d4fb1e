import CUDPD

/// A listener that could not be opened: which protocol, address, port and interface, and the system call that failed.
///
/// The supervisor adds the service's name; the description names everything else, so that an operator never reads
/// a bare `setsockopt: No such device`.
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
        /// The interface the socket was to be bound to (SO_BINDTODEVICE) does not exist (`ENODEV`).
        case noSuchInterface
        /// Any other failure.
        case other
    }

    /// What kind of failure this is.
    public var code: Code
    /// `udp` or `tcp`.
    public var proto: String
    /// The endpoint that was being opened.
    public var endpoint: IPEndpoint
    /// The interface the socket was to be bound to (SO_BINDTODEVICE), if any.
    public var device: String?
    /// The failed system call.
    public var underlying: SystemCallError

    /// Creates a bind error, classifying the system call's `errno`.
    public init(proto: String, endpoint: IPEndpoint, device: String? = nil, underlying: SystemCallError) {
        self.proto = proto
        self.endpoint = endpoint
        self.device = device
        self.underlying = underlying
        self.code = Self.classify(underlying.errno)
    }

    private static func classify(_ error: Int32) -> Code {
        switch error {
        case EADDRINUSE: .addressInUse
        case EADDRNOTAVAIL: .addressNotAvailable
        case EACCES, EPERM: .permissionDenied
        case EAFNOSUPPORT, EPROTONOSUPPORT: .familyNotSupported
        case ENODEV: .noSuchInterface
        default: .other
        }
    }

    /// `cannot open udp 0.0.0.0:7 on interface 'eth9': ...`: protocol, address, port and interface, then what failed.
    public var description: String {
        let what = "\(proto) \(endpoint)" + (device.map { " on interface '\($0)'" } ?? "")
        switch code {
        case .addressInUse:
            return "cannot bind \(what): the port is already in use by another socket (another program, or another "
                + "listener of udpd)"
        case .addressNotAvailable:
            return "cannot bind \(what): the address is not configured on this host"
        case .noSuchInterface:
            return "cannot open \(what): the interface does not exist on this host"
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
