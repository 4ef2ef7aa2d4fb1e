import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// The process's table of file descriptors.
public enum DescriptorTable {
    /// Makes room for `count` more descriptors in one step, before they are opened.
    ///
    /// Linux grows a process's descriptor table by doubling it, and in a multi-threaded process every growth waits
    /// for an RCU grace period (`synchronize_rcu` in `expand_fdtable`, several milliseconds). Opening the 2,000
    /// sockets of a 1,000-service configuration one by one grew the table five times and spent about 40 ms asleep;
    /// growing it once, to the size needed, waits once. Where the table is already large enough this costs four
    /// quick system calls and no wait.
    ///
    /// Nothing is kept open and no descriptor is ever replaced: `F_DUPFD` takes the lowest *free* number at or
    /// above the one asked for. Any failure (such as a lower limit on open files) is ignored, since the sockets
    /// then grow the table, or fail, as they would have anyway.
    public static func reserve(_ count: Int) {
        guard count > 0 else { return }
        guard let probe = try? systemCall("open", context: "/dev/null", { open("/dev/null", O_RDONLY | O_CLOEXEC) })
        else { return }
        // close is never retried on EINTR (the descriptor is gone either way), so it bypasses systemCall.
        defer { _ = close(probe) }
        let ceiling = openFileLimit().map { Int(clamping: $0.rlim_cur) - 1 } ?? Int(CInt.max)
        let wanted = CInt(clamping: min(Int(probe) + count, ceiling))
        guard wanted > probe,
            let high = try? systemCall("fcntl", context: "F_DUPFD_CLOEXEC", { fcntl(probe, F_DUPFD_CLOEXEC, wanted) })
        else { return }
        _ = close(high)
    }

    /// Raises the soft limit on open descriptors to the hard limit, as systemd advises daemons that need many and
    /// never use select(2): systemd starts services with a soft limit of 1024 (and a hard one of 524288), which
    /// 1,000 UDP services with two workers each, or 10,000 TCP connections, would exceed. Returns the soft limit
    /// in force afterwards; `nil` when it cannot be read.
    @discardableResult
    public static func raiseOpenFileLimit() -> Int? {
        guard let limit = openFileLimit() else { return nil }
        guard limit.rlim_cur < limit.rlim_max else { return Int(clamping: limit.rlim_cur) }
        var raised = limit
        raised.rlim_cur = limit.rlim_max
        guard (try? systemCall("setrlimit", context: "RLIMIT_NOFILE") { setrlimit(openFiles, &raised) }) != nil else {
            return Int(clamping: limit.rlim_cur)
        }
        return Int(clamping: raised.rlim_cur)
    }

    #if canImport(Glibc)
    private static let openFiles = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
    #else
    private static let openFiles = RLIMIT_NOFILE
    #endif

    /// RLIMIT_NOFILE now; `nil` when it cannot be read.
    private static func openFileLimit() -> rlimit? {
        var limit = rlimit()
        guard (try? systemCall("getrlimit", context: "RLIMIT_NOFILE") { getrlimit(openFiles, &limit) }) != nil else {
            return nil
        }
        return limit
    }
}
