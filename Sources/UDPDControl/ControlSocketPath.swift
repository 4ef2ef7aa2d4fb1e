import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Where the control socket lives when neither the configuration nor the command line says.
public enum ControlSocketPath {
    /// The default control socket path for the current user.
    ///
    /// - `/run/udpd/control.sock` when running as root (effective uid 0);
    /// - otherwise `$XDG_RUNTIME_DIR/udpd/control.sock`;
    /// - and when `XDG_RUNTIME_DIR` is unset or empty, `/tmp/udpd-UID/control.sock` (a directory udpd creates with
    ///   mode 0700 and refuses to use if another user owns it).
    public static func defaultPath() -> String {
        let uid = geteuid()
        if uid == 0 { return "/run/udpd/control.sock" }
        if let runtime = getenv("XDG_RUNTIME_DIR").map({ String(cString: $0) }), !runtime.isEmpty {
            return (runtime.hasSuffix("/") ? runtime : runtime + "/") + "udpd/control.sock"
        }
        return "/tmp/udpd-\(uid)/control.sock"
    }
}

/// A directory on the way to the control socket (or the socket file itself) that someone other than root and the
/// trusted users could change: whoever may write to it may swap the socket for one of their own and answer `udpctl`
/// in the daemon's name.
public struct UnsafeControlPath: Error, Sendable, Equatable, CustomStringConvertible {
    /// The path of the offending component (after resolving symbolic links).
    public var component: String
    /// Why it is unsafe, for a person.
    public var reason: String

    /// Creates an error.
    public init(component: String, reason: String) {
        self.component = component
        self.reason = reason
    }

    /// `/srv/shared: group and others may write to it (mode 0777) and it is not sticky`.
    public var description: String { "\(component): \(reason)" }
}

extension ControlSocketPath {
    /// `S_IFMT`, `S_IFDIR` and `S_ISVTX`, the same on Linux and the BSDs.
    private static let fileTypeMask: UInt32 = 0o170000
    private static let directoryType: UInt32 = 0o040000
    private static let stickyBit: UInt32 = 0o1000

    /// Checks every directory from `/` down to `directory` as OpenSSH's `StrictModes` does (its `safe_path`): after
    /// resolving symbolic links, each must be owned by root or by one of `trustedOwners`, and writable by neither
    /// group nor others, unless it is sticky (`/tmp`): there only an entry's owner may rename or remove it, and the
    /// entry below is checked in turn.
    ///
    /// - Returns: the first unsafe component from the top, or `nil` when the whole path is safe. A directory that
    ///   cannot be examined is reported as unsafe with the system's reason.
    public static func firstUnsafeComponent(
        ofDirectory directory: String,
        trustedOwners: Set<UInt32>
    ) -> UnsafeControlPath? {
        let resolved: String
        do {
            resolved = try realPath(directory)
        } catch {
            return UnsafeControlPath(component: directory, reason: "cannot resolve it: \(error)")
        }
        var components = ["/"]
        var prefix = ""
        for name in resolved.split(separator: "/") {
            prefix += "/" + name
            components.append(prefix)
        }
        for component in components {
            if let reason = unsafeReason(component, trustedOwners: trustedOwners, expectDirectory: true) {
                return UnsafeControlPath(component: component, reason: reason)
            }
        }
        return nil
    }

    /// Checks the socket file at `path` and every directory above it (see
    /// ``firstUnsafeComponent(ofDirectory:trustedOwners:)``): the socket file must belong to root or to one of
    /// `trustedOwners` too.
    public static func firstUnsafeComponent(ofSocket path: String, trustedOwners: Set<UInt32>) -> UnsafeControlPath? {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        if let unsafe = firstUnsafeComponent(ofDirectory: directory, trustedOwners: trustedOwners) { return unsafe }
        var status = stat()
        do {
            try systemCall("lstat", context: path) { lstat(path, &status) }
        } catch {
            return UnsafeControlPath(component: path, reason: "cannot examine it: \(error.reason)")
        }
        let owner = UInt32(status.st_uid)
        guard owner == 0 || trustedOwners.contains(owner) else {
            return UnsafeControlPath(component: path, reason: ownerReason(owner, trustedOwners: trustedOwners))
        }
        return nil
    }

    /// Why `component` is unsafe, or `nil` when it is fine.
    private static func unsafeReason(
        _ component: String,
        trustedOwners: Set<UInt32>,
        expectDirectory: Bool
    ) -> String? {
        var status = stat()
        do {
            try systemCall("lstat", context: component) { lstat(component, &status) }
        } catch {
            return "cannot examine it: \(error.reason)"
        }
        let mode = UInt32(status.st_mode)
        if expectDirectory && mode & fileTypeMask != directoryType { return "it is not a directory" }
        let owner = UInt32(status.st_uid)
        guard owner == 0 || trustedOwners.contains(owner) else {
            return ownerReason(owner, trustedOwners: trustedOwners)
        }
        if mode & 0o022 != 0 && mode & stickyBit == 0 {
            let who = mode & 0o020 != 0 ? (mode & 0o002 != 0 ? "group and others" : "its group") : "others"
            return "\(who) may write to it (mode \(String(mode & 0o7777, radix: 8))) and it is not sticky"
        }
        return nil
    }

    /// `it belongs to uid 1000; only root and uid 0 may own it`.
    private static func ownerReason(_ owner: UInt32, trustedOwners: Set<UInt32>) -> String {
        let allowed = (Set([0]).union(trustedOwners)).sorted().map { $0 == 0 ? "root" : "uid \($0)" }
        return "it belongs to uid \(owner); only \(allowed.joined(separator: ", ")) may own it"
    }

    /// `realpath(3)`: the absolute path of `path` with every symbolic link, `.` and `..` resolved.
    private static func realPath(_ path: String) throws(SystemCallError) -> String {
        var resolved: UnsafeMutablePointer<CChar>?
        try systemCall("realpath", context: path) { () -> Int32 in
            resolved = realpath(path, nil)
            return resolved == nil ? -1 : 0
        }
        defer { free(resolved) }
        return String(cString: resolved!)
    }
}
