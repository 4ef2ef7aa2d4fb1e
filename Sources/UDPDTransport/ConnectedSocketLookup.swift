import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Finds the descriptor of a connected socket this process holds, by its two addresses.
///
/// SwiftNIO accepts udpd's TCP connections and does not expose a channel's descriptor; an exec service needs it to
/// give the connection itself to its program as stdin and stdout, inetd style. A TCP connection's pair of addresses
/// is unique among this process's sockets, so the descriptor whose `getsockname` and `getpeername` match is the
/// connection's. Call it on the channel's event loop, where the channel cannot be closed meanwhile.
public enum ConnectedSocketLookup {
    /// A close-on-exec duplicate of the socket connected from `local` to `remote`, or `nil` when there is none.
    public static func duplicate(local: IPEndpoint, remote: IPEndpoint) -> CInt? {
        for fd in openDescriptors() {
            guard let name = endpoint(fd, getsockname), name == local,
                let peer = endpoint(fd, getpeername), peer == remote
            else { continue }
            return try? systemCall("fcntl", context: "F_DUPFD_CLOEXEC") { fcntl(fd, F_DUPFD_CLOEXEC, 3) }
        }
        return nil
    }

    /// The descriptors open in this process (`/proc/self/fd` on Linux, `/dev/fd` elsewhere).
    private static func openDescriptors() -> [CInt] {
        #if os(Linux)
        let directory = "/proc/self/fd"
        #else
        let directory = "/dev/fd"
        #endif
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var result: [CInt] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { bytes in
                String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let fd = CInt(name), fd > 2 { result.append(fd) }
        }
        return result
    }

    private static func endpoint(
        _ fd: CInt,
        _ call: (CInt, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> CInt
    ) -> IPEndpoint? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                try? systemCall("getsockname") { call(fd, address, &length) }
            }
        }
        guard result != nil else { return nil }
        return withUnsafeBytes(of: &storage) { IPEndpoint($0.baseAddress!) }
    }
}
