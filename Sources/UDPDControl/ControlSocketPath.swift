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
