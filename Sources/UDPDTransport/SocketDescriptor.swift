import CUDPD
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// A socket file descriptor that is closed exactly once, and never while a worker uses it.
///
/// Ownership: whoever created the descriptor owns it until ``release()`` hands it on (to SwiftNIO, say). Worker
/// threads that serve it from other references do their system calls inside ``withDescriptor(_:)``, which holds a
/// use: ``close()`` marks the descriptor closing at once (no new use starts) and the close itself happens when the
/// last use ends. So a send or receive never reaches a descriptor number that was closed and may already name
/// another socket, whichever thread closes and however long a worker takes.
///
/// `Sendable` because the descriptor is an immutable integer and its state (closing, closed, uses) is atomic; the
/// kernel serialises concurrent `sendmsg` calls on one socket, so several threads may send on it at once.
public final class SocketDescriptor: Sendable {
    /// The raw descriptor. Valid until ``close()``; inside ``withDescriptor(_:)`` for users other than the owner.
    public let rawValue: CInt
    /// Bit 63: closing (``close()`` or ``release()`` was called); the bits below: uses under way.
    private let state = Atomic<UInt64>(0)
    private let closed = Atomic<Bool>(false)
    private static let closing: UInt64 = 1 << 63

    /// Takes ownership of `rawValue`.
    public init(taking rawValue: CInt) {
        self.rawValue = rawValue
    }

    /// Opens a socket of `family` and `type` (`SOCK_DGRAM`, `SOCK_STREAM`) that is not inherited by children.
    ///
    /// `context` (like every context and option name below) is built only if the call fails: binding a thousand
    /// listeners formatted thousands of addresses into messages that were never shown.
    public static func open(
        family: IPFamily,
        type: CInt,
        context: @autoclosure () -> String
    ) throws(SystemCallError) -> SocketDescriptor {
        let fd = try systemCall("socket", context: context()) {
            socket(family.socketDomain, type | cudpd_sock_cloexec, 0)
        }
        #if !os(Linux)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        #endif
        return SocketDescriptor(taking: fd)
    }

    /// Whether ``close()`` (or ``release()``) has been called; the descriptor may still be open for a use under way.
    public var isClosed: Bool { state.load(ordering: .acquiring) & Self.closing != 0 }

    /// Runs `body` with the descriptor, which stays open (its number naming this socket) until `body` returns;
    /// `nil` without running it when the descriptor is closing. Two atomic operations: use it per batch, not per
    /// datagram.
    @inline(__always)
    public func withDescriptor<Result, Failure: Error>(
        _ body: (CInt) throws(Failure) -> Result
    ) throws(Failure) -> Result? {
        var current = state.load(ordering: .relaxed)
        while true {
            if current & Self.closing != 0 { return nil }
            let (exchanged, original) = state.weakCompareExchange(
                expected: current,
                desired: current + 1,
                ordering: .acquiring
            )
            if exchanged { break }
            current = original
        }
        defer { endUse() }
        return try body(rawValue)
    }

    @inline(__always)
    private func endUse() {
        if state.subtract(1, ordering: .acquiringAndReleasing).newValue == Self.closing { closeNow() }
    }

    /// Closes the descriptor once no use is under way (at once when none is; else when the last one ends); later
    /// calls do nothing.
    public func close() {
        let before = state.bitwiseOr(Self.closing, ordering: .acquiringAndReleasing).oldValue
        if before & Self.closing == 0, before == 0 { closeNow() }
    }

    private func closeNow() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        #if canImport(Glibc)
        _ = Glibc.close(rawValue)
        #elseif canImport(Musl)
        _ = Musl.close(rawValue)
        #elseif canImport(Darwin)
        _ = Darwin.close(rawValue)
        #endif
    }

    /// Gives up ownership: the caller (for example a SwiftNIO channel) closes the descriptor from now on. Only the
    /// owner calls it, when no worker serves the descriptor.
    public func release() -> CInt {
        state.bitwiseOr(Self.closing, ordering: .acquiringAndReleasing)
        closed.store(true, ordering: .releasing)
        return rawValue
    }

    deinit {
        close()
    }

    /// Sets an integer socket option.
    public func setOption(
        level: CInt,
        name: CInt,
        value: CInt,
        _ call: @autoclosure () -> String
    ) throws(SystemCallError) {
        var value = value
        try systemCall("setsockopt", context: call()) {
            setsockopt(rawValue, level, name, &value, socklen_t(MemoryLayout<CInt>.size))
        }
    }

    /// Connects to `endpoint` (for UDP: fixes the peer, so that only its datagrams arrive).
    public func connect(to endpoint: IPEndpoint, context: @autoclosure () -> String) throws(SystemCallError) {
        let fd = rawValue
        _ = try endpoint.withSockAddr { (address, length) throws(SystemCallError) in
            try systemCall("connect", context: context()) {
                #if canImport(Glibc)
                Glibc.connect(fd, address, length)
                #elseif canImport(Musl)
                Musl.connect(fd, address, length)
                #else
                Darwin.connect(fd, address, length)
                #endif
            }
        }
    }

    /// Starts connecting a non-blocking stream socket to `endpoint`: returns once the handshake is under way
    /// (EINPROGRESS) or done; the outcome shows as writability and `SO_ERROR`.
    public func startConnect(to endpoint: IPEndpoint, context: @autoclosure () -> String) throws(SystemCallError) {
        do {
            try connect(to: endpoint, context: context())
        } catch where error.errno == EINPROGRESS {
            return
        }
    }

    /// Binds to `endpoint`.
    public func bind(to endpoint: IPEndpoint, context: @autoclosure () -> String) throws(SystemCallError) {
        let fd = rawValue
        _ = try endpoint.withSockAddr { (address, length) throws(SystemCallError) in
            try systemCall("bind", context: context()) {
                #if canImport(Glibc)
                Glibc.bind(fd, address, length)
                #elseif canImport(Musl)
                Musl.bind(fd, address, length)
                #else
                Darwin.bind(fd, address, length)
                #endif
            }
        }
    }

    /// The address the socket is bound to (with the port the kernel chose for port 0).
    public func localEndpoint(context: @autoclosure () -> String) throws(SystemCallError) -> IPEndpoint {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = rawValue
        _ = try withUnsafeMutablePointer(to: &storage) { (pointer) throws(SystemCallError) in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { (address) throws(SystemCallError) in
                try systemCall("getsockname", context: context()) { getsockname(fd, address, &length) }
            }
        }
        guard let endpoint = withUnsafeBytes(of: &storage, { IPEndpoint($0.baseAddress!) }) else {
            throw SystemCallError(call: "getsockname", errno: EAFNOSUPPORT, context: context())
        }
        return endpoint
    }
}
