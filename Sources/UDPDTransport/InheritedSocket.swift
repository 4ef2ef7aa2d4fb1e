import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket udpd was started with (systemd socket activation), inspected so that a listener can adopt it.
///
/// `Sendable`: every stored property is immutable and `Sendable`.
public struct InheritedSocket: Sendable, CustomStringConvertible {
    /// What kind of socket it is.
    public enum Kind: String, Sendable {
        /// `SOCK_DGRAM`: a UDP listener may adopt it.
        case datagram
        /// `SOCK_STREAM`: a TCP listener may adopt it.
        case stream
        /// Anything else (`SOCK_SEQPACKET`, a FIFO, ...): never adopted.
        case other
    }

    /// The descriptor; owned by this value until a listener adopts it or it is closed.
    public let descriptor: SocketDescriptor
    /// Its name from `LISTEN_FDNAMES` (systemd's `FileDescriptorName=`, by default the socket unit's name).
    public let name: String?
    /// Its type.
    public let kind: Kind
    /// The IPv4 or IPv6 address and port it is bound to; `nil` for a Unix socket or anything not IP.
    public let localEndpoint: IPEndpoint?
    /// Whether SO_REUSEPORT is set on it (systemd's `ReusePort=yes`), so that more worker sockets may join its port.
    public let reusePort: Bool
    /// Whether it is an IPv6 wildcard socket without IPV6_V6ONLY (systemd's default `BindIPv6Only=both`): it takes
    /// IPv4 too, its IPv4 peers appearing as IPv4-mapped addresses (`::ffff:a.b.c.d`), so it serves both families of
    /// its port and no IPv4 wildcard socket can be bound beside it.
    public let isDualStack: Bool
    /// The interface it is bound to (SO_BINDTODEVICE), as a `per-interface` listener's socket is; `nil` for none.
    public let device: String?
    /// The socket's inode: two descriptors of one socket (systemd hands over a socket unit's socket and the same
    /// socket from its descriptor store) have the same, and only one of them is adopted.
    public let socketInode: UInt64

    /// Inspects descriptor `fd` (with getsockopt and getsockname) and takes ownership of it.
    public init(descriptor fd: CInt, name: String?) {
        let socket = SocketDescriptor(taking: fd)
        self.descriptor = socket
        self.name = name
        #if canImport(Glibc)
        let (datagram, stream) = (CInt(SOCK_DGRAM.rawValue), CInt(SOCK_STREAM.rawValue))
        #else
        let (datagram, stream) = (SOCK_DGRAM, SOCK_STREAM)
        #endif
        switch try? socket.option(level: SOL_SOCKET, name: SO_TYPE, "SO_TYPE fd \(fd)") {
        case datagram: kind = .datagram
        case stream: kind = .stream
        default: kind = .other
        }
        localEndpoint = try? socket.localEndpoint(context: "inherited fd \(fd)")
        reusePort = (try? socket.option(level: SOL_SOCKET, name: SO_REUSEPORT, "SO_REUSEPORT fd \(fd)")) ?? 0 != 0
        if let endpoint = localEndpoint, endpoint.family == .ipv6, endpoint.isWildcard {
            let v6Only = try? socket.option(level: CInt(IPPROTO_IPV6), name: IPV6_V6ONLY, "IPV6_V6ONLY fd \(fd)")
            isDualStack = v6Only == 0
        } else {
            isDualStack = false
        }
        device = Self.boundDevice(of: fd)
        var status = stat()
        socketInode = fstat(fd, &status) == 0 ? UInt64(status.st_ino) : 0
    }

    /// The interface name SO_BINDTODEVICE holds on `fd`, or `nil`.
    private static func boundDevice(of fd: CInt) -> String? {
        var name = [CChar](repeating: 0, count: Int(IFNAMSIZ) + 1)
        var length = socklen_t(IFNAMSIZ)
        let got = try? systemCall("getsockopt", context: "SO_BINDTODEVICE fd \(fd)") {
            getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, &name, &length)
        }
        guard got != nil, length > 0, name[0] != 0 else { return nil }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `fd 3 "udpd.socket" udp 0.0.0.0:88`, or `fd 3 udp [::]:88 (dual-stack)`, for logs.
    public var description: String {
        let proto =
            switch kind {
            case .datagram: "udp"
            case .stream: "tcp"
            case .other: "not udp or tcp"
            }
        let named = name.map { " \"\($0)\"" } ?? ""
        let endpoint = localEndpoint.map { "\($0)" } ?? "(not an IP socket)"
        let bound = device.map { " on \($0)" } ?? ""
        return "fd \(descriptor.rawValue)\(named) \(proto) \(endpoint)\(bound)\(isDualStack ? " (dual-stack)" : "")"
    }
}

/// The systemd socket-activation protocol (`sd_listen_fds(3)`): descriptors 3, 4, ... handed to udpd, announced by
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES`.
public enum SocketActivation {
    /// The first inherited descriptor (`SD_LISTEN_FDS_START`).
    public static let firstDescriptor: CInt = 3

    /// The variable a udpd being upgraded sets for the new udpd it starts, holding its own pid: the new process is
    /// its child, so it takes `LISTEN_FDS` without `LISTEN_PID` when this names its parent (posix_spawn cannot set
    /// `LISTEN_PID` to a pid it does not know yet), and reports the pid in status as `upgraded_from`.
    public static let upgradeVariable = "UDPD_UPGRADE_FROM"

    /// The `LISTEN_FDNAMES` name of the readiness pipe an upgrading udpd hands to the new one: the new udpd writes
    /// `ready PID` on it once it serves, or its errors before it exits.
    public static let readinessName = "upgrade-ready"

    /// The `LISTEN_FDNAMES` name of the metrics endpoint's listening socket.
    public static let metricsName = "metrics"

    /// The `LISTEN_FDNAMES` / `FDNAME=` name of a listening socket: protocol, address and port, and the interface
    /// of a `per-interface` socket, joined by `-`, with each `:` of an IPv6 address written `_` (systemd refuses
    /// `:` in names): `udp-127.0.0.1-88`, `tcp-__1-88`, `udp-0.0.0.0-88-eth0`. Names are for people and for
    /// `FDSTOREREMOVE=1`; udpd matches inherited sockets by what the kernel says of them, never by name.
    public static func descriptorName(proto: String, endpoint: IPEndpoint, device: String?) -> String {
        let address = endpoint.addressText.replacingColons()
        return "\(proto)-\(address)-\(endpoint.port)" + (device.map { "-\($0)" } ?? "")
    }

    /// Why the announced descriptors were not taken.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// `LISTEN_PID` names another process: the variables were meant for someone else (a parent).
        case otherProcess(String)
        /// `LISTEN_FDS` is not a positive number.
        case badCount(String)

        public var description: String {
            switch self {
            case .otherProcess(let pid): "LISTEN_PID=\(pid) is not this process; ignoring LISTEN_FDS"
            case .badCount(let count): "LISTEN_FDS=\(count) is not a number of descriptors; ignoring it"
            }
        }
    }

    /// The descriptors announced in `environment` for process `pid`, with their names (when `LISTEN_FDNAMES` has
    /// one per descriptor). An empty list when nothing was announced.
    public static func announcedDescriptors(
        in environment: [String: String],
        pid: pid_t
    ) -> Result<[(descriptor: CInt, name: String?)], Refusal> {
        guard let listenPID = environment["LISTEN_PID"] else { return .success([]) }
        guard pid_t(listenPID) == pid else { return .failure(.otherProcess(listenPID)) }
        let countText = environment["LISTEN_FDS"] ?? ""
        guard let count = Int(countText), count >= 0, count < 65_536 else { return .failure(.badCount(countText)) }
        let names = environment["LISTEN_FDNAMES"].map {
            $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        }
        return .success(
            (0..<count).map { index in
                let name = names.flatMap { $0.count == count ? $0[index] : nil }
                return (firstDescriptor + CInt(index), name)
            }
        )
    }

    /// Takes the sockets announced to this process: inspects each, marks it close-on-exec (so that programs udpd
    /// starts never inherit it), and removes `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` from the environment.
    ///
    /// Without `LISTEN_PID`, the descriptors are taken when ``upgradeVariable`` names this process's parent: the
    /// udpd that started it for an upgrade.
    public static func takeInheritedSockets(
        environment: [String: String]
    ) -> Result<[InheritedSocket], Refusal> {
        var environment = environment
        if environment["LISTEN_PID"] == nil, let parent = environment[upgradeVariable], pid_t(parent) == getppid() {
            environment["LISTEN_PID"] = "\(getpid())"
        }
        let announced = announcedDescriptors(in: environment, pid: getpid())
        for variable in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", upgradeVariable] { unsetenv(variable) }
        return announced.map { descriptors in
            descriptors.map { entry in
                _ = fcntl(entry.descriptor, F_SETFD, FD_CLOEXEC)
                return InheritedSocket(descriptor: entry.descriptor, name: entry.name)
            }
        }
    }
}

extension String {
    /// The text with every `:` written `_`.
    fileprivate func replacingColons() -> String {
        String(map { $0 == ":" ? "_" : $0 })
    }
}
