#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The C `struct group`, named where the enum's own `group(_:)` does not hide it.
private typealias GroupEntry = group

/// The user and group databases: the one place udpd turns a configured `user:` or `group:` name into ids, for the
/// daemon's own privilege drop (``PrivilegeTarget``) and for its programs (``ProcessIdentity``).
///
/// The reentrant calls (`getpwnam_r`, `getgrnam_r`) are used: a reload looks names up on the supervisor while the
/// exec runner may look up others.
public enum AccountDatabase {
    /// A user's uid and primary gid.
    public struct User: Sendable, Equatable {
        /// The user's uid.
        public var uid: UInt32
        /// The user's primary group.
        public var gid: UInt32
    }

    /// The user named `name`; throws naming it when the database has no such user.
    public static func user(_ name: String) throws(PrivilegeError) -> User {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let status = getpwnam_r(name, &entry, &buffer, buffer.count, &found)
        guard status == 0, found != nil else {
            throw PrivilegeError(status == 0 ? "unknown user '\(name)'" : "cannot look up user '\(name)': \(status)")
        }
        return User(uid: UInt32(entry.pw_uid), gid: UInt32(entry.pw_gid))
    }

    /// The gid of the group named `name`; throws naming it when the database has no such group.
    public static func group(_ name: String) throws(PrivilegeError) -> UInt32 {
        var entry = GroupEntry()
        var found: UnsafeMutablePointer<GroupEntry>?
        var buffer = [CChar](repeating: 0, count: 4096)
        let status = getgrnam_r(name, &entry, &buffer, buffer.count, &found)
        guard status == 0, found != nil else {
            throw PrivilegeError(status == 0 ? "unknown group '\(name)'" : "cannot look up group '\(name)': \(status)")
        }
        return UInt32(entry.gr_gid)
    }
}
