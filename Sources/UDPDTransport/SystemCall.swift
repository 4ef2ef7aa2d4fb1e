import CUDPD

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A system call that failed: which call, with which `errno`, and what it was doing.
public struct SystemCallError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The name of the call, such as `bind` or `recvmsg`.
    public var call: String
    /// The `errno` the call left.
    public var errno: Int32
    /// What the call was for, such as `udp 127.0.0.1:7`; empty when there is nothing to add.
    public var context: String

    /// Creates an error for `call` failing with `errno`.
    public init(call: String, errno: Int32, context: String = "") {
        self.call = call
        self.errno = errno
        self.context = context
    }

    /// The C library's text for `errno`.
    public var reason: String { String(cString: strerror(errno)) }

    public var description: String {
        context.isEmpty ? "\(call): \(reason) (errno \(errno))" : "\(call) \(context): \(reason) (errno \(errno))"
    }
}

/// The one door to the kernel: runs `body`, retries while it fails with `EINTR`, and throws a
/// ``SystemCallError`` naming `call` for any other failure.
///
/// - Parameters:
///   - call: the system call's name, for the error.
///   - context: what the call is for (an address, a path), for the error.
///   - body: the call; a negative result means failure with `errno` set.
/// - Returns: the call's non-negative result.
@inline(__always)
@discardableResult
public func systemCall<Result: BinaryInteger>(
    _ call: StaticString,
    context: @autoclosure () -> String = "",
    _ body: () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = body()
        if result >= 0 { return result }
        let error = errno
        if error == EINTR { continue }
        throw SystemCallError(call: call.description, errno: error, context: context())
    }
}

/// Like ``systemCall(_:context:_:)``, but returns `nil` instead of throwing when the call fails with
/// `EAGAIN`/`EWOULDBLOCK`, the normal end of a non-blocking read or write.
@inline(__always)
public func nonBlockingSystemCall<Result: BinaryInteger>(
    _ call: StaticString,
    context: @autoclosure () -> String = "",
    _ body: () -> Result
) throws(SystemCallError) -> Result? {
    while true {
        let result = body()
        if result >= 0 { return result }
        let error = errno
        if error == EINTR { continue }
        if error == EAGAIN || error == EWOULDBLOCK { return nil }
        throw SystemCallError(call: call.description, errno: error, context: context())
    }
}

/// Ignores SIGPIPE for the whole process, so that writing to a pipe or socket whose reader went away fails with
/// `EPIPE` where the write is made instead of killing the process. udpd and udpctl call it first thing, rather than
/// rely on SwiftNIO doing the same the first time it opens a socket. Programs udpd starts get the default back.
public func ignoreBrokenPipeSignal() {
    _ = signal(SIGPIPE, SIG_IGN)
}
