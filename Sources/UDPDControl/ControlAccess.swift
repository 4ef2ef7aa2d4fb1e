import NIOCore
import Synchronization
import UDPDTransport

/// Who may use the control socket, decided on the peer's credentials (`SO_PEERCRED`) for every connection.
///
/// The rule: root and the daemon's own effective uid are always served. Anyone else is served only when
/// `control.mode` grants group or other write permission on the socket file (`0660`, `0666`): the operator then
/// chose to let the file system decide, and whoever could connect is served. With the default `0600` a process
/// of another uid that still reaches the socket (through an inherited descriptor, or after someone changed the
/// file's mode behind udpd's back) gets an error and the connection is closed. A peer whose credentials the
/// platform does not report counts as another uid.
public struct ControlAccess: Sendable, Equatable {
    /// The daemon's effective uid.
    public var ownerUID: UInt32
    /// The socket file's mode as configured.
    public var mode: UInt32

    /// Creates the access rule for a daemon running as `ownerUID` with a socket file of `mode`.
    public init(ownerUID: UInt32, mode: UInt32) {
        self.ownerUID = ownerUID
        self.mode = mode
    }

    /// Whether `peer` may send requests.
    public func permits(_ peer: ControlPeer) -> Bool {
        if mode & 0o022 != 0 { return true }
        guard let uid = peer.uid else { return false }
        return uid == 0 || uid == ownerUID
    }
}

/// The open control connections, capped so that a flood of connections (each held up to the request timeout)
/// cannot use up the daemon's descriptors or keep `status` and `reload` from being answered: at the cap the oldest
/// connection is closed to make room for the new one.
///
/// `Sendable`: the table is behind a mutex.
final class ControlConnectionRegistry: Sendable {
    private let channels = Mutex(OldestFirstRegistry<ObjectIdentifier, any Channel>())
    let limit: Int
    /// Connections closed to make room.
    let evicted = Atomic<UInt64>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// Records `channel`, closing the oldest connections over the cap.
    func add(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        let victims: [any Channel] = channels.withLock { channels in
            var victims: [any Channel] = []
            while channels.count >= limit, let oldest = channels.removeOldest() {
                victims.append(oldest.value)
            }
            channels.insert(channel, for: key)
            return victims
        }
        if !victims.isEmpty { evicted.wrappingAdd(UInt64(victims.count), ordering: .relaxed) }
        for victim in victims { victim.close(promise: nil) }
        channel.closeFuture.whenComplete { _ in
            self.channels.withLock { _ = $0.remove(key) }
        }
    }
}
