import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Who is on the other end of a control connection, as the kernel reports it.
///
/// Read with `SO_PEERCRED` on Linux and `LOCAL_PEERCRED`/`LOCAL_PEERPID` on Darwin; a field is `nil` when the
/// platform does not report it or the query failed.
public struct ControlPeer: Sendable, Equatable, CustomStringConvertible {
    /// The peer's effective user id.
    public var uid: UInt32?
    /// The peer's process id.
    public var pid: Int32?

    /// Creates a peer description.
    public init(uid: UInt32? = nil, pid: Int32? = nil) {
        self.uid = uid
        self.pid = pid
    }

    /// `uid U pid P`, with `?` for what is unknown.
    public var description: String {
        "uid \(uid.map(String.init) ?? "?") pid \(pid.map(String.init) ?? "?")"
    }

    /// Asks the kernel for the credentials of `channel`'s peer; never fails, an unknown peer has `nil` fields.
    static func read(from channel: any Channel) -> EventLoopFuture<ControlPeer> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(ControlPeer())
        }
        #if canImport(Glibc) || canImport(Musl)
        let credentials: EventLoopFuture<LinuxPeerCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        return credentials.map { ControlPeer(uid: $0.uid, pid: $0.pid) }.recover { _ in ControlPeer() }
        #elseif canImport(Darwin)
        let credentials: EventLoopFuture<xucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_LOCAL),
            name: SocketOptionName(LOCAL_PEERCRED)
        )
        let pid: EventLoopFuture<pid_t> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_LOCAL),
            name: SocketOptionName(LOCAL_PEERPID)
        )
        let uid = credentials.map { Optional($0.cr_uid) }.recover { _ in nil }
        return uid.and(pid.map { Optional($0) }.recover { _ in nil }).map { ControlPeer(uid: $0.0, pid: $0.1) }
        #else
        return channel.eventLoop.makeSucceededFuture(ControlPeer())
        #endif
    }
}

#if canImport(Glibc) || canImport(Musl)
/// Linux's `struct ucred`, which Glibc exports only under `_GNU_SOURCE`: three 32-bit fields, no padding.
struct LinuxPeerCredentials: Sendable {
    var pid: Int32 = 0
    var uid: UInt32 = 0
    var gid: UInt32 = 0
}
#endif
