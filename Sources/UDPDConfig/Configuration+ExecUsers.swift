#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Whom exec programs run as, checked against udpd's own user.
extension Diagnostics {
    /// The user a udpd started as root gives a program whose service names none.
    static let defaultProgramUser = "nobody"

    /// Refuses an exec service whose program would run as udpd's own top-level `user:`.
    ///
    /// A top-level `user:` means udpd starts as root and drops to that user after binding (an unprivileged udpd
    /// cannot change its user at all), so programs run as their service's `user:`, `nobody` by default. A program
    /// with udpd's own uid could signal it (SIGSTOP, SIGHUP) or trace it. Two names that are the same uid in the
    /// user database count as the same user. Without a top-level `user:`, a udpd started as root runs as root,
    /// and `user: root` on a service stays the explicit opt-in to root.
    mutating func checkExecUsers(_ configuration: Configuration) {
        guard let daemonUser = configuration.user else { return }
        for service in configuration.services where service.handler == .exec {
            let programUser = service.user ?? Self.defaultProgramUser
            guard Self.sameUser(programUser, daemonUser) else { continue }
            let which = service.user == nil ? "'\(programUser)' (the default)" : "'\(programUser)'"
            error(
                "service '\(service.name)' runs its program as \(which), the user udpd itself drops to: a "
                    + "program could signal or trace udpd; give the service a 'user:' of its own",
                at: service.position
            )
        }
    }

    /// Whether two user names are the same user: the same name, or the same uid in the user database.
    private static func sameUser(_ first: String, _ second: String) -> Bool {
        if first == second { return true }
        guard let one = getpwnam(first).map({ $0.pointee.pw_uid }) else { return false }
        guard let other = getpwnam(second).map({ $0.pointee.pw_uid }) else { return false }
        return one == other
    }
}
