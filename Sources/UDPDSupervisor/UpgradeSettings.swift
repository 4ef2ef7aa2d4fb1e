import Synchronization
import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// How this udpd starts its successor on `udpctl upgrade` or SIGUSR2, and, when it is itself the successor of an
/// upgrade, how it tells its predecessor that it serves.
///
/// `Sendable`: immutable values and a `Sendable` reporter.
public struct UpgradeSettings: Sendable {
    /// The executable to start when the request names none: udpd's own path as it was at start, so that the binary
    /// installed there since is the one started.
    public var executable: String
    /// The command-line arguments after the program name, the same as this udpd's (`-c FILE`, `--control-socket`).
    public var arguments: [String]
    /// How long the new udpd may take to serve before it is killed and the upgrade fails.
    public var deadline: Duration
    /// Set when this udpd was started by an upgrade: where it reports that it serves.
    public var predecessor: UpgradePredecessor?

    /// Creates settings.
    public init(
        executable: String,
        arguments: [String],
        deadline: Duration = .seconds(30),
        predecessor: UpgradePredecessor? = nil
    ) {
        self.executable = executable
        self.arguments = arguments
        self.deadline = deadline
        self.predecessor = predecessor
    }

    /// This process's executable as the kernel names it now (`/proc/self/exe`), without the ` (deleted)` the kernel
    /// appends once the file was replaced; `fallback` where it cannot be read.
    public static func ownExecutable(fallback: String) -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return fallback }
        let path = String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return path.hasSuffix(" (deleted)") ? String(path.dropLast(10)) : path
    }
}

/// The udpd that started this one for an upgrade, as seen from the new process: its pid, and the readiness pipe on
/// which this process writes `ready PID` once it serves, or its error lines before it exits.
///
/// `Sendable`: the pipe is behind a mutex and written once closed never again.
public final class UpgradePredecessor: Sendable {
    /// The pid of the udpd that started this one (reported in status as `upgraded_from`).
    public let pid: Int32
    private let pipe: Mutex<CInt?>

    /// Takes ownership of the pipe's write end `descriptor`.
    public init(pid: Int32, descriptor: CInt) {
        self.pid = pid
        self.pipe = Mutex(descriptor)
    }

    /// Writes one error line for the predecessor to report (`udpctl upgrade` prints it).
    public func report(error line: String) {
        write(Array((line.split(separator: "\n").joined(separator: " ") + "\n").utf8), closing: false)
    }

    /// Writes `ready PID` and closes the pipe: from now on the predecessor stops reading.
    public func reportReady() {
        write(Array("ready \(getpid())\n".utf8), closing: true)
    }

    private func write(_ bytes: [UInt8], closing: Bool) {
        pipe.withLock { descriptor in
            guard let fd = descriptor else { return }
            _ = bytes.withUnsafeBytes { raw in
                try? systemCall("write", context: "upgrade readiness") { Glibc.write(fd, raw.baseAddress, raw.count) }
            }
            if closing {
                close(fd)
                descriptor = nil
            }
        }
    }
}
