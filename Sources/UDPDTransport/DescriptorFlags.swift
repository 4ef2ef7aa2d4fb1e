import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Turns O_NONBLOCK on or off for `fd`, keeping its other status flags.
func setNonBlocking(_ fd: CInt, _ enabled: Bool, context: @autoclosure () -> String = "") throws(SystemCallError) {
    let flags = try systemCall("fcntl", context: "F_GETFL \(context())") { fcntl(fd, F_GETFL) }
    let wanted = enabled ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
    guard wanted != flags else { return }
    try systemCall("fcntl", context: "F_SETFL \(context())") { fcntl(fd, F_SETFL, wanted) }
}

/// A pipe whose two ends are non-blocking and closed on exec (pipe2 on Linux; pipe and fcntl elsewhere).
func makeNonBlockingPipe() throws(SystemCallError) -> (read: CInt, write: CInt) {
    var fds: [CInt] = [-1, -1]
    try systemCall("pipe2") { cudpd_pipe_cloexec_nonblock(&fds) }
    #if !os(Linux)
    for fd in fds {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, O_NONBLOCK)
    }
    #endif
    return (fds[0], fds[1])
}
