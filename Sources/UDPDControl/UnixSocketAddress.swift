import UDPDTransport

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// `SOCK_STREAM` as the `Int32` that `socket(2)` takes on every platform.
#if canImport(Glibc)
let streamSocketType = Int32(SOCK_STREAM.rawValue)
#else
let streamSocketType = SOCK_STREAM
#endif

/// The largest path a `sockaddr_un` holds, leaving room for the terminating NUL.
let maximumUnixSocketPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

/// Calls `body` with a `sockaddr_un` for `path`, or returns `nil` when the path does not fit.
func withUnixSocketAddress<Result>(
    _ path: String,
    _ body: (UnsafePointer<sockaddr>, socklen_t) throws(SystemCallError) -> Result
) throws(SystemCallError) -> Result? {
    let bytes = Array(path.utf8)
    guard !bytes.isEmpty, bytes.count <= maximumUnixSocketPathLength else { return nil }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let length = socklen_t(MemoryLayout<sockaddr_un>.size)
    var copy = address
    return try withUnsafePointer(to: &copy) { (pointer) throws(SystemCallError) -> Result in
        try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (raw) throws(SystemCallError) -> Result in
            try body(raw, length)
        }
    }
}

/// Opens a blocking, close-on-exec Unix stream socket.
func makeUnixStreamSocket(context: @autoclosure () -> String) throws(SystemCallError) -> Int32 {
    #if canImport(Glibc)
    let flags = Int32(SOCK_CLOEXEC.rawValue)
    return try systemCall("socket", context: context()) { socket(AF_UNIX, streamSocketType | flags, 0) }
    #elseif canImport(Musl)
    return try systemCall("socket", context: context()) { socket(AF_UNIX, streamSocketType | SOCK_CLOEXEC, 0) }
    #else
    let fd = try systemCall("socket", context: context()) { socket(AF_UNIX, streamSocketType, 0) }
    _ = try? systemCall("fcntl", context: context()) { fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return fd
    #endif
}

/// Closes `fd`, ignoring the result: nothing useful can be done about a failed close of a socket we are done with.
func closeDescriptor(_ fd: Int32) {
    _ = try? systemCall("close") { close(fd) }
}
