#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The user and group an exec program runs as.
public struct ProcessIdentity: Sendable, Equatable, CustomStringConvertible {
    /// The uid to run as.
    public var uid: UInt32
    /// The gid to run as; it is also the only supplementary group.
    public var gid: UInt32

    /// Creates an identity.
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "uid \(uid) gid \(gid)" }

    /// `nobody` and `nogroup` (or `nobody`, or the user's primary group), 65534 where the databases lack them:
    /// whom a udpd running as root starts programs as unless the service names a user.
    public static let unprivileged: ProcessIdentity = {
        let nobody = try? AccountDatabase.user("nobody")
        let gid =
            (try? AccountDatabase.group("nogroup")) ?? (try? AccountDatabase.group("nobody")) ?? nobody?.gid ?? 65_534
        return ProcessIdentity(uid: nobody?.uid ?? 65_534, gid: gid)
    }()

    /// Looks `user` up in the user database, and `group` (else the user's primary group) in the group database.
    /// With neither, `nil`: the default applies (see ``effective(explicit:)``).
    public static func resolve(user: String?, group: String?) throws(PrivilegeError) -> ProcessIdentity? {
        guard user != nil || group != nil else { return nil }
        var uid = UInt32(geteuid())
        var gid = UInt32(getegid())
        if let user {
            let entry = try AccountDatabase.user(user)
            uid = entry.uid
            gid = entry.gid
        } else if ProcessRunner.startedAsRoot {
            // A group alone does not opt in to root, nor to udpd's own user: the user is still the default.
            uid = unprivileged.uid
        }
        if let group { gid = try AccountDatabase.group(group) }
        return ProcessIdentity(uid: uid, gid: gid)
    }

    /// Whom to start a program as now: the service's explicit identity, else ``unprivileged`` when udpd was
    /// started as root (whether it still runs as root or dropped to its own `user:`), else `nil`: udpd was
    /// started unprivileged, and its programs share its uid.
    public static func effective(explicit: ProcessIdentity?) -> ProcessIdentity? {
        explicit ?? (ProcessRunner.startedAsRoot ? unprivileged : nil)
    }
}
